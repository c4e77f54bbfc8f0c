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
// json.Number, bool and nil, in one streaming pass that refuses any duplicate
// key at any depth. Python's json (and so MLflow) keeps the last duplicate,
// other parsers the first: with a duplicate, two readers can see two ids.
//
// Invalid UTF-8 is refused too: Go would replace it with U+FFFD while Python
// rejects the body, so a body both could read must be valid.
func parseJSONObject(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		return nil, errJSONEncoding
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	budget := maxJSONTokens
	v, err := readJSONValue(dec, 0, &budget)
	if err != nil {
		return nil, err
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

func readJSONValue(dec *json.Decoder, depth int, budget *int) (any, error) {
	*budget--
	if *budget < 0 {
		return nil, errJSONTooLarge
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, errJSONSyntax
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, errJSONTooDeep
		}
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, errJSONSyntax
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errJSONSyntax
				}
				if _, dup := m[k]; dup {
					return nil, errJSONDuplicate
				}
				v, err := readJSONValue(dec, depth+1, budget)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if end, err := dec.Token(); err != nil || end != json.Delim('}') {
				return nil, errJSONSyntax
			}
			return m, nil
		case '[':
			l := []any{}
			for dec.More() {
				v, err := readJSONValue(dec, depth+1, budget)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if end, err := dec.Token(); err != nil || end != json.Delim(']') {
				return nil, errJSONSyntax
			}
			return l, nil
		}
		return nil, errJSONSyntax
	case string, json.Number, bool, nil:
		return t, nil
	}
	return nil, errJSONSyntax
}
