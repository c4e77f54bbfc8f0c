// Package pyregex answers Python's re.match(pattern, name) with Go's RE2,
// exactly or not at all. mlflow-oidc-auth grants permissions by regular
// expressions that its Python code applies with re.match (anchored at the
// start only) to experiment, model, scorer and gateway names; reading its
// data, mlflow-authz must match the same names.
//
// Python's syntax and RE2's differ. Compile translates the common subset
// construct by construct into RE2 syntax with the same meaning, and refuses
// everything else with an error saying why: what RE2 cannot do
// (lookaround, backreferences, atomic groups, conditionals, possessive
// quantifiers), what Python itself rejects (bad escapes, misplaced global
// flags, nothing to repeat), and flags whose meaning differs (ASCII,
// LOCALE, VERBOSE). A few constructs agree with Python only on some names:
// the word, space and boundary classes and IGNORECASE on ASCII names, a
// non-multiline $ on names that do not end in a newline. For any other
// name, Match returns ErrUndecidable. Callers treat an error as a deny:
// a grant that cannot be read exactly is never guessed at.
//
//	re, err := pyregex.Compile(`^team-a/.*`)
//	ok, err := re.Match("team-a/churn")
package pyregex

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrUndecidable is returned by Match when RE2 cannot answer for this name
// exactly as Python would.
var ErrUndecidable = errors.New("pyregex: RE2 cannot decide this name exactly as Python would")

// Regexp is a compiled pattern. It is safe for concurrent use.
type Regexp struct {
	re *regexp.Regexp
	// asciiOnly: the pattern uses \w \W \s \S \b \B or IGNORECASE, whose
	// Unicode behaviour in Python is not RE2's: exact on ASCII names only.
	asciiOnly bool
	// endDollar: the pattern has a non-multiline $, which Python also
	// matches before a final newline: exact unless the name ends in "\n".
	endDollar bool
}

// Match reports whether Python's re.match(pattern, name) finds a match.
func (r *Regexp) Match(name string) (bool, error) {
	if r.asciiOnly && !isASCII(name) {
		return false, ErrUndecidable
	}
	if r.endDollar && strings.HasSuffix(name, "\n") {
		return false, ErrUndecidable
	}
	return r.re.MatchString(name), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Compile translates a Python pattern into RE2, anchored at the start as
// re.match is. The error names the construct and its offset.
func Compile(pattern string) (*Regexp, error) {
	t := &translator{src: pattern}
	body, err := t.translate()
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(t.global + `\A(?:` + body + `)`)
	if err != nil {
		// Within the translated subset this means a limit of RE2's, such
		// as a repeat count above 1000.
		return nil, fmt.Errorf("pyregex: %q: RE2 refuses the translation: %w", pattern, err)
	}
	return &Regexp{re: re, asciiOnly: t.asciiOnly, endDollar: t.endDollar}, nil
}

// translator walks a Python pattern once (sre_parse's grammar) and writes
// RE2 syntax.
type translator struct {
	src       string
	pos       int
	out       strings.Builder
	global    string // RE2 flag group for Python's leading global flags
	asciiOnly bool
	endDollar bool
	// multiline is the MULTILINE flag in effect; scopes holds its value
	// outside each open group, restored at the group's ')'.
	multiline bool
	scopes    []bool
	// repeatable: the last thing written can take a quantifier (Python
	// refuses "nothing to repeat" after an anchor, a flag group or a
	// quantifier).
	repeatable bool
}

func (t *translator) errorf(at int, format string, args ...any) error {
	return fmt.Errorf("pyregex: %q at offset %d: %s", t.src, at, fmt.Sprintf(format, args...))
}

func (t *translator) next() (rune, bool) {
	if t.pos >= len(t.src) {
		return 0, false
	}
	r, n := utf8.DecodeRuneInString(t.src[t.pos:])
	t.pos += n
	return r, true
}

func (t *translator) peek() (rune, bool) {
	if t.pos >= len(t.src) {
		return 0, false
	}
	r, _ := utf8.DecodeRuneInString(t.src[t.pos:])
	return r, true
}

func (t *translator) translate() (string, error) {
	if !utf8.ValidString(t.src) {
		return "", t.errorf(0, "not valid UTF-8")
	}
	if err := t.leadingFlags(); err != nil {
		return "", err
	}
	for t.pos < len(t.src) {
		start := t.pos
		r, _ := t.next()
		var err error
		switch r {
		case '\\':
			err = t.escape(start)
		case '[':
			err = t.class(start)
		case '(':
			err = t.group(start)
		case ')':
			if len(t.scopes) == 0 {
				return "", t.errorf(start, "unbalanced parenthesis")
			}
			t.multiline = t.scopes[len(t.scopes)-1]
			t.scopes = t.scopes[:len(t.scopes)-1]
			t.out.WriteByte(')')
			t.repeatable = true
		case '|':
			t.out.WriteByte('|')
			t.repeatable = false
		case '.':
			t.out.WriteByte('.')
			t.repeatable = true
		case '^':
			t.out.WriteByte('^')
			t.repeatable = false
		case '$':
			if !t.multiline {
				t.endDollar = true
			}
			t.out.WriteByte('$')
			t.repeatable = false
		case '*', '+', '?':
			err = t.quantifier(start, string(r))
		case '{':
			q, ok := t.braces()
			if !ok {
				t.literal('{')
				break
			}
			err = t.quantifier(start, q)
		default:
			t.literal(r)
		}
		if err != nil {
			return "", err
		}
	}
	if len(t.scopes) != 0 {
		return "", t.errorf(len(t.src), "missing ), unterminated subpattern")
	}
	return t.out.String(), nil
}

// leadingFlags reads the global flag groups that start the pattern, the
// only place Python 3.11+ accepts them.
func (t *translator) leadingFlags() error {
	var re2 string
	for strings.HasPrefix(t.src[t.pos:], "(?") && t.pos+2 < len(t.src) && strings.ContainsRune("aiLmsux", rune(t.src[t.pos+2])) {
		end := strings.IndexAny(t.src[t.pos+2:], ":)")
		if end < 0 || t.src[t.pos+2+end] != ')' {
			break // a scoped group such as (?i:...): group() reads it
		}
		for i, f := range t.src[t.pos+2 : t.pos+2+end] {
			switch f {
			case 'i':
				re2 += "i"
				t.asciiOnly = true
			case 'm':
				re2 += "m"
				t.multiline = true
			case 's':
				re2 += "s"
			case 'u': // UNICODE: the default for str patterns
			default:
				return t.errorf(t.pos+2+i, "flag %q changes what classes and case mean (or how the pattern is read): not translated", f)
			}
		}
		t.pos += 3 + end
	}
	if re2 != "" {
		t.global = "(?" + re2 + ")"
	}
	return nil
}

// quantifier writes q (the quantifier, already read) and a lazy '?' after
// it; Python 3.11's possessive '+' and any second quantifier are refused.
func (t *translator) quantifier(start int, q string) error {
	if !t.repeatable {
		return t.errorf(start, "nothing to repeat")
	}
	t.out.WriteString(q)
	if r, ok := t.peek(); ok && r == '?' {
		t.pos++
		t.out.WriteByte('?')
	}
	if r, ok := t.peek(); ok {
		switch r {
		case '+':
			return t.errorf(t.pos, "possessive quantifier: RE2 has none")
		case '*', '?':
			return t.errorf(t.pos, "multiple repeat")
		case '{':
			save := t.pos
			t.pos++
			if _, ok := t.braces(); ok {
				return t.errorf(save, "multiple repeat")
			}
			t.pos = save
		}
	}
	t.repeatable = false
	return nil
}

// braces reads "{m}", "{m,}", "{,n}", "{m,n}" or "{,}" after the '{'
// (Python reads {,n} as {0,n} and {,} as *, where RE2 reads them as
// literals) and returns it in RE2 form; ok is false, with nothing read,
// when the '{' is a literal.
func (t *translator) braces() (string, bool) {
	rest := t.src[t.pos:]
	end := strings.IndexByte(rest, '}')
	if end < 0 {
		return "", false
	}
	body := rest[:end]
	lo, hi, comma := body, "", false
	if i := strings.IndexByte(body, ','); i >= 0 {
		lo, hi, comma = body[:i], body[i+1:], true
	}
	if !digits(lo) || !digits(hi) || (!comma && lo == "") {
		return "", false
	}
	t.pos += end + 1
	if lo == "" {
		lo = "0"
	}
	if !comma {
		return "{" + lo + "}", true
	}
	return "{" + lo + "," + hi + "}", true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// group translates a group after its '('. Every group is written
// non-capturing: without backreferences, captures change nothing.
func (t *translator) group(start int) error {
	t.scopes = append(t.scopes, t.multiline)
	if r, ok := t.peek(); !ok || r != '?' {
		t.out.WriteString("(?:")
		t.repeatable = false
		return nil
	}
	t.pos++
	r, ok := t.next()
	if !ok {
		return t.errorf(start, "unexpected end of pattern")
	}
	switch r {
	case ':':
		t.out.WriteString("(?:")
	case 'P':
		n, _ := t.next()
		switch n {
		case '<':
			end := strings.IndexByte(t.src[t.pos:], '>')
			if end < 0 || !identifier(t.src[t.pos:t.pos+end]) {
				return t.errorf(start, "bad group name")
			}
			t.pos += end + 1
			t.out.WriteString("(?:")
		case '=':
			return t.errorf(start, "backreference (?P=...): RE2 has none")
		default:
			return t.errorf(start, "unknown extension ?P%c", n)
		}
	case '=', '!':
		return t.errorf(start, "lookahead: RE2 has none")
	case '<':
		if n, _ := t.peek(); n == '=' || n == '!' {
			return t.errorf(start, "lookbehind: RE2 has none")
		}
		return t.errorf(start, "unknown extension ?<")
	case '>':
		return t.errorf(start, "atomic group: RE2 has none")
	case '(':
		return t.errorf(start, "conditional group: RE2 has none")
	case '#':
		end := strings.IndexByte(t.src[t.pos:], ')')
		if end < 0 {
			return t.errorf(start, "missing ), unterminated comment")
		}
		t.pos += end + 1
		t.scopes = t.scopes[:len(t.scopes)-1]
		return nil // a comment leaves repeatable as it was
	default:
		t.pos--
		return t.scopedFlags(start)
	}
	t.repeatable = false
	return nil
}

// scopedFlags reads "(?flags-flags:" (Python 3.7+); a global flag group
// anywhere but the start is an error in Python 3.11+.
func (t *translator) scopedFlags(start int) error {
	end := strings.IndexAny(t.src[t.pos:], ":)")
	if end < 0 {
		return t.errorf(start, "missing -, : or )")
	}
	if t.src[t.pos+end] == ')' {
		return t.errorf(start, "global flags not at the start of the expression")
	}
	on, off, _ := strings.Cut(t.src[t.pos:t.pos+end], "-")
	multiline := t.multiline
	var re2On, re2Off string
	for _, part := range []struct {
		flags string
		dst   *string
		set   bool
	}{{on, &re2On, true}, {off, &re2Off, false}} {
		for _, f := range part.flags {
			switch f {
			case 'i':
				*part.dst += "i"
				t.asciiOnly = true
			case 'm':
				*part.dst += "m"
				multiline = part.set
			case 's':
				*part.dst += "s"
			default:
				return t.errorf(start, "flag %q in a scoped group: not translated", f)
			}
		}
	}
	if on == "" && off == "" {
		return t.errorf(start, "missing flag")
	}
	t.pos += end + 1
	t.multiline = multiline
	t.out.WriteString("(?" + re2On)
	if re2Off != "" {
		t.out.WriteString("-" + re2Off)
	}
	t.out.WriteByte(':')
	t.repeatable = false
	return nil
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// The classes whose Python (Unicode, str pattern) meaning RE2 has no name
// for, as RE2 class contents that agree with Python on every ASCII
// character; asciiOnly guards the rest. Python's \s on ASCII is
// [ \t\n\v\f\r\x1c-\x1f] (str.isspace), RE2's lacks \v and \x1c-\x1f.
const (
	wordSet     = `0-9A-Za-z_`
	nonWordSet  = `\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x{10ffff}`
	spaceSet    = `\t-\r\x1c-\x20`
	nonSpaceSet = `\x00-\x08\x0e-\x1b\x21-\x{10ffff}`
)

// escape translates the escape after '\' outside a class.
func (t *translator) escape(start int) error {
	r, ok := t.next()
	if !ok {
		return t.errorf(start, "bad escape (end of pattern)")
	}
	t.repeatable = true
	switch r {
	case 'A':
		t.out.WriteString(`\A`)
		t.repeatable = false
	case 'Z':
		t.out.WriteString(`\z`)
		t.repeatable = false
	case 'b', 'B':
		t.asciiOnly = true
		t.out.WriteString(`\` + string(r))
		t.repeatable = false
	case 'd':
		t.out.WriteString(`\p{Nd}`)
	case 'D':
		t.out.WriteString(`\P{Nd}`)
	case 'w', 'W', 's', 'S':
		t.asciiOnly = true
		t.out.WriteString("[" + classSet(r) + "]")
	default:
		c, err := t.charEscape(start, r, false)
		if err != nil {
			return err
		}
		t.literal(c)
	}
	return nil
}

func classSet(r rune) string {
	switch r {
	case 'w':
		return wordSet
	case 'W':
		return nonWordSet
	case 's':
		return spaceSet
	}
	return nonSpaceSet
}

// charEscape reads an escape that stands for one character (r is the
// character after '\'), as sre_parse's _escape and _class_escape do.
func (t *translator) charEscape(start int, r rune, inClass bool) (rune, error) {
	switch r {
	case 'a':
		return '\a', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'v':
		return '\v', nil
	case 'x':
		return t.hex(start, 2)
	case 'u':
		return t.hex(start, 4)
	case 'U':
		return t.hex(start, 8)
	case 'N':
		return 0, t.errorf(start, `named character \N{...}: not translated`)
	}
	if r >= '0' && r <= '9' {
		return t.octalOrGroup(start, r, inClass)
	}
	if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
		return 0, t.errorf(start, `bad escape \%c`, r)
	}
	return r, nil // an escaped punctuation or non-ASCII character is itself
}

func (t *translator) hex(start, n int) (rune, error) {
	if t.pos+n > len(t.src) {
		return 0, t.errorf(start, "incomplete escape")
	}
	v, err := strconv.ParseUint(t.src[t.pos:t.pos+n], 16, 32)
	if err != nil || v > utf8.MaxRune {
		return 0, t.errorf(start, "bad escape %s", t.src[start:t.pos+n])
	}
	t.pos += n
	return rune(v), nil
}

// octalOrGroup follows sre_parse: in a class, an octal digit starts an
// octal escape of up to three digits; outside, "\0" starts one of up to
// three, two more digits after 1-7 make one if all three are octal, and
// anything else is a group reference, which RE2 cannot do.
func (t *translator) octalOrGroup(start int, first rune, inClass bool) (rune, error) {
	octAt := func(i int) bool { return i < len(t.src) && t.src[i] >= '0' && t.src[i] <= '7' }
	digitAt := func(i int) bool { return i < len(t.src) && t.src[i] >= '0' && t.src[i] <= '9' }
	if inClass || first == '0' {
		if first > '7' {
			return 0, t.errorf(start, `bad escape \%c`, first)
		}
		s := string(first)
		for n := 0; n < 2 && octAt(t.pos); n++ {
			s += t.src[t.pos : t.pos+1]
			t.pos++
		}
		return t.octal(start, s)
	}
	if digitAt(t.pos) && first <= '7' && octAt(t.pos) && octAt(t.pos+1) {
		s := string(first) + t.src[t.pos:t.pos+2]
		t.pos += 2
		return t.octal(start, s)
	}
	ref := string(first)
	if digitAt(t.pos) {
		ref += t.src[t.pos : t.pos+1]
	}
	return 0, t.errorf(start, `backreference \%s: RE2 has none`, ref)
}

func (t *translator) octal(start int, s string) (rune, error) {
	v, _ := strconv.ParseUint(s, 8, 32)
	if v > 0o377 {
		return 0, t.errorf(start, `octal escape value \%s outside of range 0-0o377`, s)
	}
	return rune(v), nil
}

// literal writes r so that RE2 reads it as itself, never as syntax.
func (t *translator) literal(r rune) {
	t.out.WriteString(quote(r))
	t.repeatable = true
}

func quote(r rune) string {
	if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
		return string(r)
	}
	return fmt.Sprintf(`\x{%x}`, r)
}

// class translates a character class after its '['.
func (t *translator) class(start int) error {
	t.out.WriteByte('[')
	if r, ok := t.peek(); ok && r == '^' {
		t.pos++
		t.out.WriteByte('^')
	}
	first := true
	for {
		itemStart := t.pos
		r, ok := t.next()
		if !ok {
			return t.errorf(start, "unterminated character set")
		}
		if r == ']' && !first {
			break
		}
		first = false
		lo, set, err := t.classItem(itemStart, r)
		if err != nil {
			return err
		}
		if set != "" {
			t.out.WriteString(set)
			if n, ok := t.peek(); ok && n == '-' && t.pos+1 < len(t.src) && t.src[t.pos+1] != ']' {
				return t.errorf(itemStart, "bad character range")
			}
			continue
		}
		// A range lo-hi, unless '-' is last.
		if n, ok := t.peek(); ok && n == '-' && t.pos+1 < len(t.src) && t.src[t.pos+1] != ']' {
			t.pos++
			hiStart := t.pos
			r2, _ := t.next()
			hi, set2, err := t.classItem(hiStart, r2)
			if err != nil {
				return err
			}
			if set2 != "" || hi < lo {
				return t.errorf(itemStart, "bad character range")
			}
			t.out.WriteString(quote(lo) + "-" + quote(hi))
			continue
		}
		t.out.WriteString(quote(lo))
	}
	t.out.WriteByte(']')
	t.repeatable = true
	return nil
}

// classItem reads one member of a class: a character, or (set non-empty)
// a class escape in RE2 class syntax.
func (t *translator) classItem(start int, r rune) (rune, string, error) {
	if r != '\\' {
		return r, "", nil
	}
	e, ok := t.next()
	if !ok {
		return 0, "", t.errorf(start, "unterminated character set")
	}
	switch e {
	case 'd':
		return 0, `\p{Nd}`, nil
	case 'D':
		return 0, `\P{Nd}`, nil
	case 'w', 'W', 's', 'S':
		t.asciiOnly = true
		return 0, classSet(e), nil
	case 'b':
		return '\b', "", nil
	}
	c, err := t.charEscape(start, e, true)
	return c, "", err
}
