package authz

// CanonicalPathGeneral is CanonicalPath without its fast path: every path
// it does not refuse byte by byte is decoded and checked in turn, as every
// path was before. FuzzCanonicalPath holds the two to the same answer.
func CanonicalPathGeneral(raw string) (string, string) {
	if _, reason := scanPath(raw); reason != "" {
		return "", reason
	}
	return decodedPath(raw)
}
