package manifests

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Outside this module, in the repository.
const (
	installDoc = "../docs/install.md"
	dockerfile = "../Dockerfile"
)

// TestEveryKustomizationRendersStrictly builds every kustomization in this
// directory (base, overlays, monitoring, examples) with kustomize's Go API
// and decodes every object strictly into its upstream type.
func TestEveryKustomizationRendersStrictly(t *testing.T) {
	dirs, err := kustomizations(".")
	require.NoError(t, err)
	require.Subset(t, dirs, []string{"base", "overlays/example", "monitoring", "examples/otel-collector"})
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			r, err := render(dir)
			require.NoError(t, err)
			assert.NotEmpty(t, r.objects)
		})
	}
}

// TestExampleInstall checks the example overlay, as installed with the mesh
// config, monitoring and the collector example, against itself, the
// service's configuration loader, the Dockerfile and the install guide.
func TestExampleInstall(t *testing.T) {
	in, err := load(".", installDoc, dockerfile)
	require.NoError(t, err)
	for _, e := range in.check() {
		t.Error(e)
	}
}

// copyTree copies this directory's manifests (not the Go files) to a
// temporary directory, where a test may break them.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(path, ".go") || strings.HasPrefix(path, "go.") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// edit replaces old with new in one file of a copied tree; old must be
// there exactly once.
func edit(t *testing.T, root, file, old, new string) {
	t.Helper()
	p := filepath.Join(root, file)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(data), old), "%s: %q must occur exactly once", file, old)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644))
}

// breakage is one mistake made in a copy of the manifests: old replaced by
// new in file, and the problem the validation must report.
type breakage struct {
	name, file, old, new, want string
}

// load renders a copy of the manifests with the mistake made.
func (b breakage) load(t *testing.T) (*install, error) {
	t.Helper()
	root := copyTree(t)
	edit(t, root, b.file, b.old, b.new)
	return load(root, installDoc, dockerfile)
}

// TestMisspelledFieldsFail proves the decoding is strict: one misspelled
// field anywhere (a Kubernetes object, an Istio spec, the mesh config, the
// service's own configuration) fails the validation, with its name.
func TestMisspelledFieldsFail(t *testing.T) {
	cases := []breakage{
		{"Kubernetes field", "base/deployment.yaml", "readinessProbe:", "readinesProbe:", `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{"Kubernetes field case", "base/service.yaml", "appProtocol: grpc", "AppProtocol: grpc", "AppProtocol"},
		{"Istio spec field", "base/mlflow-authorizationpolicy.yaml", "notPaths:", "notPath:", `unknown field "notPath"`},
		{"Istio enum value", "components/phoenix/authorizationpolicy.yaml", "action: CUSTOM", "action: CUSTOMER", "CUSTOMER"},
		{"mesh config field", "istio/meshconfig.yaml", "failOpen: false", "failopen: false", `unknown field "failopen"`},
		{"mesh config value", "istio/meshconfig.yaml", "normalization: MERGE_SLASHES", "normalization: MERGE_SLASH", "MERGE_SLASH"},
		{"Prometheus Operator field", "monitoring/prometheusrule.yaml", "expr: mlflow_authz_store_up == 0", "exp: mlflow_authz_store_up == 0", `unknown field "spec.groups[0].rules[3].exp"`},
		{"service configuration key", "overlays/example/config.yaml", "check_timeout: 400ms", "check_timout: 400ms", "unknown key check_timout"},
		{"session configuration key", "overlays/example/config.yaml", "  keys_file:", "  key_file:", "unknown key key_file"},
		{"Envoy field in the EnvoyFilter's patch", "components/filter/envoyfilter.yaml", "allow_mode_override: true", "allow_mode_overide: true", `unknown field "allow_mode_overide"`},
		{"Envoy Gateway field", "gateway/envoyextensionpolicy.yaml", "messageTimeout: 3s", "messageTimout: 3s", `unknown field "spec.extProc[0].messageTimout"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := tc.load(t)
			if err == nil {
				err = errors.Join(in.check()...)
			}
			require.Error(t, err, "a misspelling passed")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestBrokenCrossReferencesFail proves each cross-reference check catches
// the mistake it is for.
func TestBrokenCrossReferencesFail(t *testing.T) {
	cases := []breakage{
		{"Service selector misses the pods", "base/service.yaml", "  selector:\n    app: mlflow-authz", "  selector:\n    app: mlflow-authz-v2",
			"Service mlflow-authz: selector map[app:mlflow-authz-v2] does not match the pod labels"},
		{"policy names an unknown provider", "components/phoenix/authorizationpolicy.yaml", "name: mlflow-authz\n  rules", "name: mlflow-authz-typo\n  rules",
			`AuthorizationPolicy phoenix/mlflow-authz: provider "mlflow-authz-typo" is not an extension provider in meshConfig`},
		{"provider port is not the grpc port", "istio/meshconfig.yaml", "port: 9191", "port: 8080",
			"meshConfig provider mlflow-authz: port 8080 is not Service mlflow-authz's grpc port"},
		{"provider service is not ours", "istio/meshconfig.yaml", "service: mlflow-authz.mlflow-authz.svc.cluster.local", "service: mlflow-authz.authz.svc.cluster.local",
			`service "mlflow-authz.authz.svc.cluster.local" is no Service of the overlay`},
		{"provider times out before the service", "istio/meshconfig.yaml", "timeout: 500ms", "timeout: 300ms",
			"timeout (300ms) must be set and exceed server.check_timeout (400ms)"},
		{"provider fails open", "istio/meshconfig.yaml", "failOpen: false", "failOpen: true", "failOpen must be false"},
		{"body larger than the service accepts", "overlays/example/config.yaml", "max_recv_msg_size: 8388608", "max_recv_msg_size: 2097152",
			"does not fit server.max_recv_msg_size"},
		{"probe path the service does not serve", "base/deployment.yaml", "path: /healthz", "path: /health",
			`livenessProbe path "/health" is not served by the operations port`},
		{"probe port is not the operations port", "overlays/example/config.yaml", `http_addr: ":8080"`, `http_addr: ":8081"`,
			"readinessProbe port http-ops is 8080, but server.http_addr listens on 8081"},
		{"grpc port differs from the configuration", "overlays/example/config.yaml", `grpc_addr: ":9191"`, `grpc_addr: ":9292"`,
			`container port "grpc" is 9191, but the configuration listens on 9292`},
		{"configuration does not load", "overlays/example/config.yaml", "default_permission: NO_PERMISSIONS", "default_permission: ALL",
			"config.yaml loads, but serve would refuse it: config: apps[0] (mlflow): mlflow: default_permission \"ALL\""},
		{"undocumented Secret", "base/deployment.yaml", "name: mlflow-authz-db\n                  key: tracking-url", "name: mlflow-authz-database\n                  key: tracking-url",
			"reads Secret mlflow-authz/mlflow-authz-database: the overlay does not produce it and docs/install.md has no `kubectl -n mlflow-authz create secret generic mlflow-authz-database`"},
		{"Secret key the guide does not create", "base/migrate-job.yaml", "key: database-url", "key: url",
			`reads key "url" of Secret mlflow-authz/mlflow-authz-migrate-db, but docs/install.md creates it without that key`},
		{"token file not mounted", "components/kiali/deployment-token.yaml", "mountPath: /var/run/secrets/tokens", "mountPath: /var/run/secrets/kiali",
			"upstream.token_file /var/run/secrets/tokens/kiali-token is on no volume mounted"},
		{"cookie keys file not where the Secret is mounted", "overlays/example/config.yaml", "keys_file: /var/run/secrets/mlflow-authz/session/keys", "keys_file: /var/run/secrets/mlflow-authz/session/key",
			`session.keys_file /var/run/secrets/mlflow-authz/session/key is in the mount of volume "login", but no key of a Secret in that volume is there`},
		{"client secret mounted at another path", "components/login/deployment-login.yaml", "path: oidc/client-secret", "path: oidc/secret",
			`apps[0] (mlflow): login.client_secret_file /var/run/secrets/mlflow-authz/oidc/client-secret is in the mount of volume "login", but no key of a Secret in that volume is there`},
		{"login Secret mounted elsewhere", "components/login/deployment-login.yaml", "mountPath: /var/run/secrets/mlflow-authz", "mountPath: /var/run/secrets/login",
			"session.keys_file /var/run/secrets/mlflow-authz/session/keys is on no volume mounted into container mlflow-authz"},
		{"client secret from a variable the container lacks", "overlays/example/config.yaml",
			"# Mounted by components/login.\n      client_secret_file: /var/run/secrets/mlflow-authz/oidc/client-secret", "client_secret_env: MLFLOW_AUTHZ_CLIENT_SECRET",
			"apps[0] (mlflow): login.client_secret_env: container mlflow-authz sets no variable MLFLOW_AUTHZ_CLIENT_SECRET from a Secret"},
		{"login Secret key the guide does not create", "components/login/deployment-login.yaml", "key: client-secret", "key: oidc-client-secret",
			`reads key "oidc-client-secret" of Secret mlflow-authz/mlflow-authz-login, but docs/install.md creates it without that key`},
		{"login Secret readable by every user", "components/login/deployment-login.yaml", "defaultMode: 288", "defaultMode: 420",
			"Secret volume login: defaultMode 0644 lets every user read it"},
		{"login Secret readable by root alone", "components/login/deployment-login.yaml", "fsGroup: 65532", "supplementalGroups: [65532]",
			"Secret volume login: the non-root user reads it only through the group: defaultMode 0440 and an fsGroup"},
		{"policy in the wrong namespace", "components/phoenix/authorizationpolicy.yaml", "name: mlflow-authz\n  namespace: phoenix", "name: mlflow-authz\n  namespace: mlflow-authz",
			"AuthorizationPolicy mlflow-authz is in mlflow-authz's own namespace"},
		{"application without a policy", "components/phoenix/authorizationpolicy.yaml", "name: mlflow-authz\n  namespace: phoenix", "name: mlflow-authz\n  namespace: phoenix-ui",
			"app phoenix serves phoenix.phoenix.svc.cluster.local, but no CUSTOM AuthorizationPolicy in namespace phoenix sends its requests to mlflow-authz"},
		{"policy without the two-step label", "components/kiali/authorizationpolicy.yaml", "app.kubernetes.io/component: mesh-policy", "app.kubernetes.io/component: policy",
			"AuthorizationPolicy istio-system/mlflow-authz-kiali acts outside mlflow-authz's namespace but lacks the label app.kubernetes.io/component=mesh-policy"},
		{"misspelled Istio annotation", "base/migrate-job.yaml", "sidecar.istio.io/nativeSidecar", "sidecar.istio.io/nativesidecar",
			`annotation "sidecar.istio.io/nativesidecar" is not an Istio annotation`},
		{"latency alert off the check timeout", "monitoring/prometheusrule.yaml", "> 0.4", "> 0.5",
			"threshold 0.5s is not server.check_timeout (0.4s)"},
		{"collector identity not a trace writer", "examples/otel-collector/collector.yaml", "serviceAccountName: otel-collector", "serviceAccountName: collector",
			"does not list the collector's identity spiffe://cluster.local/ns/observability/sa/collector in trace_writers"},
		{"hardening dropped", "base/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false",
			"Deployment mlflow-authz: container mlflow-authz needs readOnlyRootFilesystem: true"},
		{"image user differs from the pods", "base/deployment.yaml", "runAsUser: 65532", "runAsUser: 1000",
			"runAsUser must be the image's USER 65532"},
		{"response filter fails open", "components/filter/envoyfilter.yaml", "failure_mode_allow: false", "failure_mode_allow: true",
			"failure_mode_allow must be false"},
		{"gateway filter fails open", "gateway/envoyextensionpolicy.yaml", "failOpen: false", "failOpen: true",
			"failOpen must be set to false"},
		{"filter deployed, configuration not told", "overlays/example/config.yaml", "ext_proc_filter: true", "ext_proc_filter: false",
			"no MLflow application sets ext_proc_filter: true"},
		{"filter skips a filtered route", "components/filter/envoyfilter.yaml", "|runs/search|", "|",
			"the path matcher skips /api/2.0/mlflow/runs/search, a filtered route"},
		{"filter gives up before the service", "components/filter/envoyfilter.yaml", "message_timeout: 3s", "message_timeout: 1s",
			"message_timeout (1s) must be set and exceed ext_proc.timeout (2s)"},
		{"filter calls another cluster", "components/filter/envoyfilter.yaml", "cluster_name: outbound|9191||", "cluster_name: outbound|8080||",
			"is not Istio's cluster for the Service's grpc port"},
		{"filter on other pods", "components/filter/envoyfilter.yaml", "workloadSelector:\n    labels:\n      app: mlflow", "workloadSelector:\n    labels:\n      app: mlflow-ui",
			"selects no workload that a CUSTOM AuthorizationPolicy protects"},
		{"gateway policy without its ReferenceGrant", "gateway/envoyextensionpolicy.yaml", "      kind: EnvoyExtensionPolicy\n      namespace: mlflow", "      kind: EnvoyExtensionPolicy\n      namespace: other",
			"no ReferenceGrant lets it use Service mlflow-authz/mlflow-authz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := tc.load(t)
			require.NoError(t, err, "the broken reference must still render and decode")
			err = errors.Join(in.check()...)
			require.Error(t, err, "the broken reference passed")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
