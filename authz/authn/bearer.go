package authn

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// bearerToken extracts the token of a Bearer Authorization header (RFC 6750
// section 2.1). It returns "" and no error when the header is absent or
// another scheme.
//
// Envoy joins repeated headers with ",", and a JWT never contains one, so a
// comma in a Bearer credential means two credentials: which one the
// upstream would use is anyone's guess, so it is refused.
func bearerToken(h string) (string, *authz.CredentialError) {
	h = strings.Trim(h, " \t")
	if h == "" {
		return "", nil
	}
	if !isBearer(h) {
		if strings.IndexByte(h, ',') >= 0 {
			for part := range strings.SplitSeq(h, ",") {
				if isBearer(strings.Trim(part, " \t")) {
					return "", deny(ReasonTokenMalformed, "more than one Authorization credential")
				}
			}
		}
		return "", nil
	}
	token := strings.Trim(h[len("bearer"):], " \t")
	if len(token) > JWTMaxTokenSize {
		return "", deny(ReasonTokenTooLarge, "bearer token too large")
	}
	if token == "" {
		return "", deny(ReasonTokenMalformed, "empty bearer token")
	}
	// Three IndexByte scans, not ContainsAny: they run at memory speed over
	// a token of several KB, on every check.
	if strings.IndexByte(token, ',') >= 0 || strings.IndexByte(token, ' ') >= 0 || strings.IndexByte(token, '\t') >= 0 {
		return "", deny(ReasonTokenMalformed, "more than one Authorization credential")
	}
	return token, nil
}

// isBearer reports whether h starts with the Bearer scheme (case-insensitive,
// RFC 9110 section 11.1) followed by whitespace or nothing.
func isBearer(h string) bool {
	const s = "bearer"
	if len(h) < len(s) || !strings.EqualFold(h[:len(s)], s) {
		return false
	}
	return len(h) == len(s) || h[len(s)] == ' ' || h[len(s)] == '\t'
}

// joseHeader is the part of the JOSE header we act on. jku, x5u, jwk and x5c
// are deliberately not read: keys only ever come from the issuer's JWKS
// (RFC 8725 section 3.10).
type joseHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// splitToken splits a compact JWS and decodes its header and payload. It
// returns ok=false for anything that is not a signed JWT (an opaque token,
// a JWE, a Phoenix API key in another format).
func splitToken(token string) (hdr joseHeader, payload []byte, ok bool) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sig, '.') >= 0 || h == "" || p == "" {
		return hdr, nil, false
	}
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || json.Unmarshal(hb, &hdr) != nil || hdr.Alg == "" {
		return hdr, nil, false
	}
	payload, err = base64.RawURLEncoding.DecodeString(p)
	if err != nil || len(payload) == 0 || payload[0] != '{' {
		return hdr, nil, false
	}
	return hdr, payload, true
}
