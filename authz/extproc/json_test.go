package extproc

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDocValidates(t *testing.T) {
	valid := []string{
		`{}`, ` { "a" : [ 1 , -2.5e+3 , "x\u00e9\n" , true , false , null , {} , [] ] } `,
		`{"a":{"b":{"c":[[[]]]}}}`, `{"k\"ey":"v"}`, `{"a":0}`, `{"a":-0.0E-0}`,
	}
	for _, s := range valid {
		d, err := newDoc([]byte(s))
		require.NoError(t, err, s)
		_, err = d.root()
		assert.NoError(t, err, s)
		assert.True(t, json.Valid([]byte(s)), "the test case itself must be valid: %s", s)
	}
	invalid := []string{
		``, `[]`, `{`, `{"a":1`, `{"a":1}x`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":01}`, `{"a":1.}`,
		`{"a":.5}`, `{"a":+1}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}",
		"{\"a\":\"\xff\"}", `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":"unterminated}`, `{"a":1}{"b":2}`,
	}
	for _, s := range invalid {
		d, err := newDoc([]byte(s))
		if err == nil {
			_, err = d.root()
		}
		assert.Error(t, err, "%q passed", s)
	}
}

func TestDocRefusesDuplicateKeysItReads(t *testing.T) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"experiment_id":"1","experiment\u005fid":"2"}`} {
		d, err := newDoc([]byte(s))
		require.NoError(t, err)
		_, err = d.root()
		assert.ErrorIs(t, err, errDuplicate, s)
	}
}

func TestDocDepthIsBounded(t *testing.T) {
	deep := `{"a":`
	for range maxDepth + 2 {
		deep += "["
	}
	d, err := newDoc([]byte(deep))
	require.NoError(t, err)
	_, err = d.root()
	assert.ErrorIs(t, err, errMalformed)
}

func TestDropKeepsTheDocumentValid(t *testing.T) {
	body := `{"rows": [ {"id":"0"} , {"id":"1"},{"id":"2"} ,{"id":"3"} ], "next_page_token":"t"}`
	for mask := 0; mask < 16; mask++ {
		d, err := newDoc([]byte(body))
		require.NoError(t, err)
		root, err := d.root()
		require.NoError(t, err)
		m, _ := find(root, "rows")
		var want []string
		i := 0
		require.NoError(t, d.rows(m.val, 1, func(ms []member) (bool, error) {
			keep := mask&(1<<i) != 0
			if keep {
				id, _, _ := stringField(d, ms, "id")
				want = append(want, id)
			}
			i++
			return keep, nil
		}))
		out, err := d.output()
		require.NoError(t, err)
		var got struct {
			Rows  []struct{ ID string } `json:"rows"`
			Token string                `json:"next_page_token"`
		}
		require.NoError(t, json.Unmarshal(out, &got), "mask %b: %s", mask, out)
		ids := []string{}
		for _, r := range got.Rows {
			ids = append(ids, r.ID)
		}
		if want == nil {
			want = []string{}
		}
		assert.Equal(t, want, ids, "mask %b", mask)
		assert.Equal(t, "t", got.Token)
	}
}

func TestOutputCopiesKeptBytesExactly(t *testing.T) {
	body := `{"experiments":[{"experiment_id":"1","name":"caf\u00e9  \"x\"","tags":[{"key":"k","value":"v"}]},{"experiment_id":"2"}]}`
	d, err := newDoc([]byte(body))
	require.NoError(t, err)
	root, _ := d.root()
	m, _ := find(root, "experiments")
	require.NoError(t, d.rows(m.val, 1, func(ms []member) (bool, error) {
		id, _, _ := stringField(d, ms, "experiment_id")
		return id == "1", nil
	}))
	out, err := d.output()
	require.NoError(t, err)
	assert.Equal(t, `{"experiments":[{"experiment_id":"1","name":"caf\u00e9  \"x\"","tags":[{"key":"k","value":"v"}]}]}`, string(out))
}

func FuzzDoc(f *testing.F) {
	for _, s := range []string{`{"experiments":[{"experiment_id":"1"},{"experiment_id":"2"}]}`, `{"a":[1,{"b":"\u0000"}]}`, `{}`, `{"x":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := newDoc(b)
		if err != nil {
			return
		}
		root, err := d.root()
		if err != nil {
			return
		}
		// What the editor accepts, encoding/json accepts too.
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		// Dropping every other member leaves valid JSON.
		keep := make([]bool, len(root))
		for i := range keep {
			keep[i] = i%2 == 0
		}
		d.dropMembers(root, keep)
		out, err := d.output()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(out) {
			t.Fatalf("edit of %q gave invalid %q", b, out)
		}
	})
}
