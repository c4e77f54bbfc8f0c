package mlflow

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// refParseJSONObject is the previous one-pass reader over encoding/json's
// Token stream: slow, but obviously right. FuzzJSONMatchesReference holds
// parseJSONObject to it.
func refParseJSONObject(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		return nil, errJSONEncoding
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	budget := maxJSONTokens
	v, err := refReadJSONValue(dec, 0, &budget)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errJSONSyntax
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errJSONNotObject
	}
	return m, nil
}

func refReadJSONValue(dec *json.Decoder, depth int, budget *int) (any, error) {
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
				v, err := refReadJSONValue(dec, depth+1, budget)
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
				v, err := refReadJSONValue(dec, depth+1, budget)
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

// FuzzJSONMatchesReference: parseJSONObject accepts exactly what the
// reference accepts, reads the same tree, and on valid JSON refuses for the
// same reason (duplicate, depth, size). On invalid JSON both refuse, though
// possibly with different reasons: the scan may meet a duplicate key before
// the syntax error that stops the reference. Both are 400 denies.
func FuzzJSONMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a\"b":1,"a\"b":2}`, `{"a":{"b":1},"b":1}`,
		`{"a":[{"b":1},{"b":2}]}`, `{"a":"}","b":"{"}`, `{"a":1}x`, `{"a" 1}`, `[]`, ``, `{"a":tru}`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k3":0}`,
		strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
		strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
		`{"a":"\ud800"}`, `{"a":1e999,"b":-0.5E+3}`, `{"a":[1,2,[3,[4]]],"b":null,"c":false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseJSONObject(body)
		want, wantErr := refParseJSONObject(body)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: got %v, reference %v", body, err, wantErr)
		}
		if err == nil {
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: read %#v, reference %#v", body, got, want)
			}
			return
		}
		if json.Valid(body) && err != wantErr {
			t.Fatalf("valid %q: refused with %v, reference %v", body, err, wantErr)
		}
	})
}
