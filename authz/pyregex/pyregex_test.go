package pyregex

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAgainstPython replays what Python's re.match answered for every
// pattern and name in testdata/python.json (written by testdata/gen.py).
// Where Compile or Match refuses, the caller denies; that is always safe.
// Where it answers, the answer must be Python's, and a pattern Python
// refuses must be refused too (mlflow-oidc-auth's request then fails).
func TestAgainstPython(t *testing.T) {
	data, err := os.ReadFile("testdata/python.json")
	require.NoError(t, err)
	var doc struct {
		Python string
		Cases  [][3]any
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	t.Logf("cases recorded with Python %s", doc.Python)
	compiled := map[string]*Regexp{}
	compileErr := map[string]error{}
	var answered, refused, undecidable int
	for _, c := range doc.Cases {
		pattern, name := c[0].(string), c[1].(string)
		re, seen := compiled[pattern]
		if !seen && compileErr[pattern] == nil {
			re, err = Compile(pattern)
			compiled[pattern], compileErr[pattern] = re, err
		}
		if c[2] == "error" {
			require.Error(t, compileErr[pattern], "Python refuses %q; so must we", pattern)
			continue
		}
		if compileErr[pattern] != nil {
			refused++
			continue
		}
		got, err := re.Match(name)
		if err != nil {
			require.ErrorIs(t, err, ErrUndecidable)
			undecidable++
			continue
		}
		answered++
		require.Equal(t, c[2].(bool), got, "re.match(%q, %q)", pattern, name)
	}
	t.Logf("%d answered as Python, %d undecidable, %d on patterns refused though Python accepts them", answered, undecidable, refused)
	assert.Greater(t, answered, 4*(refused+undecidable), "the translation should answer most cases")
}

// TestRefusals: what RE2 cannot do is refused with a reason.
func TestRefusals(t *testing.T) {
	tests := map[string]string{
		`(?=a)a`:     "lookahead",
		`(?<!a)b`:    "lookbehind",
		`(a)\1`:      "backreference",
		`(?P=n)`:     "backreference",
		`(?>a)`:      "atomic group",
		`a*+`:        "possessive",
		`(?x) a`:     `flag 'x'`,
		`(?a)\w`:     `flag 'a'`,
		`a(?i)b`:     "global flags not at the start",
		`\q`:         `bad escape \q`,
		`a{2000}`:    "RE2 refuses",
		`[z-a]`:      "bad character range",
		`\N{BULLET}`: "named character",
	}
	for pattern, why := range tests {
		_, err := Compile(pattern)
		require.Error(t, err, pattern)
		assert.Contains(t, err.Error(), why, pattern)
	}
}

// TestUndecidable: the constructs whose meaning differs on some names
// refuse those names only.
func TestUndecidable(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
		undecidable   bool
	}{
		{`\w+`, "team", true, false},
		{`\w+`, "été", false, true},
		{`(?i)team`, "TEAM", true, false},
		{`(?i)team`, "TEAMé", false, true},
		{`prod$`, "prod", true, false},
		{`prod$`, "prod\n", false, true},
		{`(?m)prod$`, "prod\n", true, false},
		{`prod\Z`, "prod\n", false, false},
		{`\d+`, "\u0663", true, false}, // ARABIC-INDIC DIGIT THREE is Nd, as in Python
	}
	for _, tt := range tests {
		re, err := Compile(tt.pattern)
		require.NoError(t, err, tt.pattern)
		got, err := re.Match(tt.name)
		if tt.undecidable {
			require.True(t, errors.Is(err, ErrUndecidable), "%q on %q: %v", tt.pattern, tt.name, err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want, got, "%q on %q", tt.pattern, tt.name)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`team-a/.*`, `(?i)[a-z]+\d{2,}$`, `(a|b)*?c`, `[\w.-]+`, `\x41\u00e9`, `a{,3}`} {
		f.Add(s, "team-a/x")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		re, err := Compile(pattern)
		if err != nil {
			return
		}
		_, _ = re.Match(name)
	})
}
