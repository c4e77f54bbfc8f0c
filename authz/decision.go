package authz

import (
	"encoding/json"
	"net/http"
)

// Reason is a stable, machine-readable code for a decision. It appears in the
// decision log, in the deny body and as a metric label, so values never change
// meaning once released.
type Reason string

// Reasons shared by every application. Packages that add their own reasons
// declare them next to the code that produces them.
const (
	ReasonAllowed            Reason = "allowed"
	ReasonDryRun             Reason = "dry_run"
	ReasonPathNotCanonical   Reason = "path_not_canonical"
	ReasonBadRequest         Reason = "bad_request"
	ReasonUnknownHost        Reason = "unknown_host"
	ReasonUnauthenticated    Reason = "unauthenticated"
	ReasonInvalidToken       Reason = "invalid_token"
	ReasonForbidden          Reason = "forbidden"
	ReasonNoRuleMatched      Reason = "no_rule_matched"
	ReasonUnavailable        Reason = "unavailable"
	ReasonDeadlineExceeded   Reason = "deadline_exceeded"
	ReasonInternal           Reason = "internal_error"
	ReasonTraceWriter        Reason = "trace_writer"
	ReasonUnknownRoute       Reason = "unknown_route"
	ReasonPermissionDenied   Reason = "permission_denied"
	ReasonResourceNotFound   Reason = "resource_not_found"
	ReasonInvalidParameter   Reason = "invalid_parameter"
	ReasonBodyTruncated      Reason = "body_truncated"
	ReasonAdminRequired      Reason = "admin_required"
	ReasonIdentityMismatch   Reason = "identity_mismatch"
	ReasonLoginRequired      Reason = "login_required"
	ReasonForeignCredentials Reason = "foreign_credentials"
)

// Header is one HTTP header name and value. Names are lower case.
type Header struct {
	Name  string
	Value string
}

// Decision is the outcome of one check. A deny is a Decision, never an error:
// errors are for infrastructure failures, and even those end in a deny.
type Decision struct {
	// Allowed is true when Envoy should pass the request upstream.
	Allowed bool
	// Status is the HTTP status Envoy answers with on a deny.
	Status int
	// Reason is the stable code behind the decision.
	Reason Reason
	// Message explains a deny to a person. It never carries internal error text.
	Message string

	// App names the application that decided, empty if none matched.
	App string
	// Identity is who the request was decided for (nil before authentication).
	Identity *Identity

	// UpstreamHeaders are set on the request sent upstream, overwriting any
	// client-sent value. Only used on allow.
	UpstreamHeaders []Header
	// RemoveHeaders are removed from the request sent upstream. Envoy removes
	// after it sets, so no name here may also appear in UpstreamHeaders.
	RemoveHeaders []string
	// ResponseHeaders go to the client: with a deny (WWW-Authenticate,
	// Location, Set-Cookie) and with an allow (a renewed session cookie, as
	// Envoy's OkHttpResponse.response_headers_to_add). Set-Cookie may repeat.
	ResponseHeaders []Header
	// Body, when set, replaces the JSON error body of a deny: a page for a
	// person in a browser. ContentType is then its media type.
	Body        string
	ContentType string

	// DryRun is true when the policy denied but the application runs in
	// dry-run mode, so the request was allowed anyway. Reason and Status keep
	// what the policy decided.
	DryRun bool
}

// Allow returns an allowing decision with the given reason.
func Allow(reason Reason) Decision {
	return Decision{Allowed: true, Status: http.StatusOK, Reason: reason}
}

// Deny returns a denying decision.
func Deny(status int, reason Reason, message string) Decision {
	return Decision{Status: status, Reason: reason, Message: message}
}

// ErrorBody is a deny's body in MLflow's error shape, so that MLflow's
// clients print it like one of MLflow's own errors, with our reason code.
// It is exactly what json.Marshal makes of the three fields: written
// directly when they are plain ASCII, through json.Marshal otherwise
// (FuzzErrorBody holds the two to each other). Reflection was a tenth of a
// deny's cost.
func (d Decision) ErrorBody() []byte {
	code := d.ErrorCode()
	if plainJSON(code) && plainJSON(d.Message) && plainJSON(string(d.Reason)) {
		b := make([]byte, 0, len(`{"error_code":"","message":"","reason":""}`)+len(code)+len(d.Message)+len(d.Reason)+8)
		b = append(b, `{"error_code":"`...)
		b = appendPlainJSON(b, code)
		b = append(b, `","message":"`...)
		b = appendPlainJSON(b, d.Message)
		b = append(b, `","reason":"`...)
		b = appendPlainJSON(b, string(d.Reason))
		return append(b, `"}`...)
	}
	// Marshalling three strings cannot fail.
	b, _ := json.Marshal(struct {
		ErrorCode string `json:"error_code"`
		Message   string `json:"message"`
		Reason    string `json:"reason"`
	}{code, d.Message, string(d.Reason)})
	return b
}

// plainJSON reports whether json.Marshal writes s as itself, but for a
// backslash before each '"' and '\': printable ASCII without the three
// characters it escapes for HTML.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendPlainJSON appends s, for which plainJSON holds, as json.Marshal
// writes it inside its quotes.
func appendPlainJSON(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return b
}

// ErrorCode maps a deny to the MLflow error_code that MLflow's clients know,
// so `mlflow` prints our denies like its own.
func (d Decision) ErrorCode() string {
	switch d.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "INVALID_PARAMETER_VALUE"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusNotFound:
		return "RESOURCE_DOES_NOT_EXIST"
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return "TEMPORARILY_UNAVAILABLE"
	default:
		return "PERMISSION_DENIED"
	}
}
