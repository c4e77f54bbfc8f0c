package mlflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// JSON limits. MLflow bodies that carry ids are small; trace payloads can be
// deeper but never this deep. Past the limits we deny rather than guess.
const (
	maxJSONDepth  = 64
	maxJSONTokens = 1 << 20
)

var (
	errJSONSyntax    = errors.New("mlflow: body is not valid JSON")
	errJSONDuplicate = errors.New("mlflow: duplicate key in JSON body")
	errJSONTooDeep   = errors.New("mlflow: JSON body nested too deeply")
	errJSONTooLarge  = errors.New("mlflow: JSON body has too many tokens")
	errJSONNotObject = errors.New("mlflow: JSON body is not an object")
	errJSONEncoding  = errors.New("mlflow: JSON body is not valid UTF-8")
)

// parseJSONObject decodes body into a tree of map[string]any, []any, string,
// json.Number, bool and nil, refusing any duplicate key at any depth.
// Python's json (and so MLflow) keeps the last duplicate, other parsers the
// first: with a duplicate, two readers can see two ids.
//
// Invalid UTF-8 is refused too: Go would replace it with U+FFFD while Python
// rejects the body, so a body both could read must be valid.
//
// It runs on every request with a body (log-batch on each training step), so
// it makes two cheap passes rather than one slow one: scanJSON finds
// duplicates and enforces the depth and size limits without building
// anything, then encoding/json's Decode (much faster than its Token stream)
// builds the tree and is the authority on syntax.
func parseJSONObject(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		return nil, errJSONEncoding
	}
	if err := scanJSON(body); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errJSONSyntax
	}
	// Exactly one value: Python's json.loads refuses trailing data.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errJSONSyntax
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errJSONNotObject
	}
	return m, nil
}

// scanFrame is one open object or array during scanJSON.
type scanFrame struct {
	obj       bool
	expectKey bool
	keysFrom  int                 // this object's keys are keys[keysFrom:]
	set       map[string]struct{} // the keys, once there are too many to search
}

// scanSetAfter is how many keys an object may have before scanJSON indexes
// them in a map: linear search stays cheap for MLflow's small objects, and a
// body with a huge object cannot make the scan quadratic.
const scanSetAfter = 16

// scanJSON walks body once, in document order, and reports the first
// duplicate key (compared after unescaping, as a JSON reader sees them), a
// container nested deeper than maxJSONDepth, or more than maxJSONTokens
// values. It does not validate the syntax (Decode does that afterwards) but
// never panics or loops on any input, and returns errJSONSyntax for what it
// cannot walk.
func scanJSON(body []byte) error {
	var (
		stackBuf [16]scanFrame
		keysBuf  [64][]byte
		stack    = stackBuf[:0]
		keys     = keysBuf[:0]
		values   int
	)
	for i := 0; i < len(body); {
		c := body[i]
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			if n := len(stack); n > 0 && stack[n-1].obj {
				stack[n-1].expectKey = true
			}
			i++
		case '{', '[':
			if values++; values > maxJSONTokens {
				return errJSONTooLarge
			}
			if len(stack) >= maxJSONDepth {
				return errJSONTooDeep
			}
			stack = append(stack, scanFrame{obj: c == '{', expectKey: c == '{', keysFrom: len(keys)})
			i++
		case '}', ']':
			n := len(stack)
			if n == 0 {
				return errJSONSyntax
			}
			keys = keys[:stack[n-1].keysFrom]
			stack = stack[:n-1]
			i++
		case '"':
			end, escaped := i+1, false
			for ; end < len(body) && body[end] != '"'; end++ {
				if body[end] == '\\' {
					escaped = true
					end++
				}
			}
			if end >= len(body) {
				return errJSONSyntax
			}
			raw := body[i : end+1]
			i = end + 1
			n := len(stack)
			if n == 0 || !stack[n-1].obj || !stack[n-1].expectKey {
				if values++; values > maxJSONTokens {
					return errJSONTooLarge
				}
				continue
			}
			top := &stack[n-1]
			top.expectKey = false
			key := raw[1 : len(raw)-1]
			if escaped {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					return errJSONSyntax
				}
				key = []byte(s)
			}
			if top.set != nil {
				if _, dup := top.set[string(key)]; dup {
					return errJSONDuplicate
				}
				top.set[string(key)] = struct{}{}
				continue
			}
			for _, k := range keys[top.keysFrom:] {
				if bytes.Equal(k, key) {
					return errJSONDuplicate
				}
			}
			keys = append(keys, key)
			if len(keys)-top.keysFrom > scanSetAfter {
				top.set = make(map[string]struct{}, 2*scanSetAfter)
				for _, k := range keys[top.keysFrom:] {
					top.set[string(k)] = struct{}{}
				}
			}
		default:
			// A number, true, false or null (or garbage for Decode to
			// refuse): one value, up to the next delimiter.
			if values++; values > maxJSONTokens {
				return errJSONTooLarge
			}
			for i++; i < len(body); i++ {
				if d := body[i]; d == ',' || d == ']' || d == '}' || d == ':' || d == '"' || d == ' ' || d == '\t' || d == '\n' || d == '\r' || d == '{' || d == '[' {
					break
				}
			}
		}
	}
	return nil
}
