package mlflowdb

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlflow-authz/mlflow-authz/store"
)

func TestCanonicalExperimentID(t *testing.T) {
	tests := []struct {
		key  string
		want int32
		ok   bool
	}{
		{"0", 0, true}, {"1", 1, true}, {"2147483647", 2147483647, true},
		{"2147483648", 0, false}, {"01", 0, false}, {"+1", 0, false}, {"-1", 0, false},
		{"", 0, false}, {"1 ", 0, false}, {"1e3", 0, false}, {"abc", 0, false}, {"١", 0, false},
	}
	for _, tt := range tests {
		got, ok := CanonicalExperimentID(tt.key)
		assert.Equal(t, tt.ok, ok, tt.key)
		assert.Equal(t, tt.want, got, tt.key)
	}
}

func TestJobExperimentID(t *testing.T) {
	tests := []struct {
		params, want string
		ok           bool
	}{
		{`{"experiment_id": "12"}`, "12", true},
		{`{"experiment_id": 12}`, "12", true},
		{`{"experiment_id": "12", "experiment_id": "13"}`, "13", true}, // last wins, as in Python's json
		{`{"experiment_id": 1.5}`, "", false},
		{`{"experiment_id": "012"}`, "", false},
		{`{"experiment_id": null}`, "", false},
		{`{"experiment_id": ["1"]}`, "", false},
		{`{}`, "", false},
		{`[]`, "", false},
		{`nope`, "", false},
	}
	for _, tt := range tests {
		got, ok := JobExperimentID(tt.params)
		assert.Equal(t, tt.ok, ok, tt.params)
		assert.Equal(t, tt.want, got, tt.params)
	}
}

func TestLowerGrant(t *testing.T) {
	r, e, bad := store.Grant{Permission: store.Read, Valid: true}, store.Grant{Permission: store.Edit, Valid: true}, store.Grant{}
	assert.Equal(t, r, LowerGrant(r, e))
	assert.Equal(t, r, LowerGrant(e, r))
	assert.Equal(t, bad, LowerGrant(bad, e))
	assert.Equal(t, bad, LowerGrant(e, bad))
	assert.Equal(t, "team", NormalizeGroup("/team"))
	assert.Equal(t, "a/b", NormalizeGroup("/a/b"))
	assert.Equal(t, "team", NormalizeGroup("team"))
}

func FuzzCanonicalExperimentID(f *testing.F) {
	for _, s := range []string{"0", "1", "01", "-1", "+1", "2147483648", "", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		n, ok := CanonicalExperimentID(key)
		if !ok {
			if n != 0 {
				t.Fatalf("%q: rejected but returned %d", key, n)
			}
			return
		}
		// Accepted ids round-trip exactly, so the grant row keyed by the
		// string and the tracking row keyed by the integer are the same.
		if n < 0 || strconv.FormatInt(int64(n), 10) != key {
			t.Fatalf("%q accepted as %d", key, n)
		}
	})
}

func FuzzJobExperimentID(f *testing.F) {
	for _, s := range []string{`{"experiment_id": "1"}`, `{"experiment_id": 1}`, `{}`, `{"experiment_id": "01"}`, `x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, params string) {
		id, ok := JobExperimentID(params)
		if !ok {
			if id != "" {
				t.Fatalf("%q: rejected but returned %q", params, id)
			}
			return
		}
		if _, canon := CanonicalExperimentID(id); !canon {
			t.Fatalf("%q: returned non-canonical id %q", params, id)
		}
		// Whatever Go's decoder sees as experiment_id must be the id.
		var p map[string]any
		if err := json.Unmarshal([]byte(params), &p); err != nil {
			t.Fatalf("%q accepted but is not a JSON object: %v", params, err)
		}
		switch v := p["experiment_id"].(type) {
		case string:
			if v != id {
				t.Fatalf("%q: got %q, JSON says %q", params, id, v)
			}
		case float64:
			if strconv.FormatFloat(v, 'f', -1, 64) != id {
				t.Fatalf("%q: got %q, JSON says %v", params, id, v)
			}
		default:
			t.Fatalf("%q: got %q from a %T", params, id, v)
		}
	})
}
