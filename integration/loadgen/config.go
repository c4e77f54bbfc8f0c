package loadgen

import "fmt"

// ServiceConfig is the mlflow-authz configuration that routes the corpus's
// hosts as the load generator expects: an MLflow app on PostgreSQL with the
// collector as trace writer, and the Phoenix and Kiali examples' rules
// reduced to what the corpus reaches. The bench and the soak both run it.
func ServiceConfig(issuer, dbURL, kialiToken string, pprof bool) string {
	return fmt.Sprintf(`
server:
  grpc_addr: 127.0.0.1:0
  http_addr: 127.0.0.1:0
  pprof: %t
  check_timeout: 2s
  shutdown_grace: 1s
log:
  level: info
issuers:
  - name: dev
    issuer: %q
    audiences: [mlflow]
spiffe:
  trust_domain: cluster.local
store:
  driver: postgres
  postgres:
    tracking_url: %q
    max_conns: 8
apps:
  - name: mlflow
    type: mlflow
    hosts: [%s]
    trace_writers: [%s]
    upstream:
      mode: headers
    mlflow:
      default_permission: NO_PERMISSIONS
  - name: phoenix
    type: rules
    hosts: [%s]
    trace_writers: [%s]
    upstream:
      mode: phoenix
    rules:
      - methods: [GET, HEAD]
        paths: [/healthz, /readyz]
        allow: anyone
      - methods: [POST, PUT, PATCH, DELETE]
        path_prefixes: [/v1/]
        groups: [phoenix-writers]
      - path_prefixes: [/graphql, /v1/]
        groups: [phoenix-users, phoenix-writers]
      - methods: [GET, HEAD]
        path_prefixes: [/]
        allow: anyone
  - name: kiali
    type: rules
    hosts: [%s]
    upstream:
      mode: kiali
      token_file: %q
    rules:
      - methods: [GET, HEAD]
        paths: [/kiali/healthz]
        allow: anyone
      - path_prefixes: [/kiali/api/]
        groups: [kiali-users]
`, pprof, issuer, dbURL, HostMLflow, CollectorPrincipal,
		HostPhoenix, CollectorPrincipal, HostKiali, kialiToken)
}
