package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	matchingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/matcher/action/v3" // SkipFilter, for the Any in the matcher
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3" // HttpRequestHeaderMatchInput
	"google.golang.org/protobuf/encoding/protojson"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

// The response filter's wiring: the EnvoyFilter of components/filter (in
// the example overlay) and Envoy Gateway's EnvoyExtensionPolicy in
// gateway/. The EnvoyFilter's patch is Envoy configuration inside a
// google.protobuf.Struct, which Istio's types accept whatever it holds, so
// it is decoded a second time, strictly, into Envoy's own HttpFilter with
// every typed_config resolved.

// extProcName is the HTTP filter the EnvoyFilter inserts.
const extProcName = "envoy.filters.http.ext_proc"

// filteredSamples are paths the filter must run on, and skipped ones it
// must not (they would pay a round trip for nothing).
var (
	filteredSamples = []string{
		"/api/2.0/mlflow/experiments/search", "/ajax-api/2.0/mlflow/experiments/search?max_results=25",
		"/api/2.0/mlflow/registered-models/search?filter=x", "/api/2.0/mlflow/model-versions/search",
		"/api/2.0/mlflow/logged-models/search", "/api/2.0/mlflow/runs/search", "/ajax-api/3.0/mlflow/scorers/list",
		"/api/3.0/mlflow/gateway/secrets/list", "/api/3.0/mlflow/gateway/endpoints/list",
		"/api/3.0/mlflow/gateway/model-definitions/list", "/ajax-api/3.0/mlflow/gateway/secrets/config",
		"/api/3.0/mlflow/traces/get?trace_id=tr-1", "/api/3.0/mlflow/traces/tr-1", "/api/3.0/mlflow/traces/batchGet",
		"/api/3.0/mlflow/traces/batchGetInfos", "/api/3.0/mlflow/traces/search", "/api/2.0/mlflow/registered-models/get?name=m",
		"/graphql", "/mlflow/graphql", "/mlflow/ajax-api/2.0/mlflow/experiments/search",
		"/api/3.0/mlflow/workspaces", "/ajax-api/3.0/mlflow/workspaces?page_token=x",
	}
	skippedSamples = []string{
		"/api/2.0/mlflow/experiments/get?experiment_id=1", "/api/2.0/mlflow/runs/log-batch", "/health", "/",
		"/static-files/index.html", "/api/2.0/mlflow-artifacts/artifacts/1/x", "/api/3.0/mlflow/traces/tr-1/tags",
		"/v1/traces", "/api/2.0/mlflow/experiments/search-datasets", "/api/3.0/mlflow/workspaces/team-b",
		"/api/3.0/mlflow/workspaces/team-b/permissions",
	}
)

// envoyExtProc is the ext_proc filter an EnvoyFilter inserts, with the path
// matcher that skips it.
type envoyExtProc struct {
	source  string
	matcher *regexp.Regexp
	config  *extprocv3.ExternalProcessor
}

// decodeExtProc reads the ext_proc filters of an EnvoyFilter: every
// HTTP_FILTER patch whose value is an HttpFilter, decoded strictly.
func decodeExtProc(ef *networkingv1alpha3.EnvoyFilter) ([]envoyExtProc, error) {
	var out []envoyExtProc
	var errs []error
	for i, p := range ef.Spec.GetConfigPatches() {
		where := fmt.Sprintf("EnvoyFilter %s/%s configPatches[%d]", ef.Namespace, ef.Name, i)
		if p.GetApplyTo().String() != "HTTP_FILTER" {
			continue
		}
		raw, err := protojson.Marshal(p.GetPatch().GetValue())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		var hf hcmv3.HttpFilter
		if err := protojson.Unmarshal(raw, &hf); err != nil {
			errs = append(errs, fmt.Errorf("%s: the patch is not an Envoy HttpFilter: %w", where, err))
			continue
		}
		if hf.GetName() != extProcName {
			continue
		}
		x := envoyExtProc{source: where}
		cfg := hf.GetTypedConfig()
		if cfg.MessageIs(&matchingv3.ExtensionWithMatcher{}) {
			var m matchingv3.ExtensionWithMatcher
			if err := cfg.UnmarshalTo(&m); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			for _, mm := range m.GetXdsMatcher().GetMatcherList().GetMatchers() {
				re := mm.GetPredicate().GetNotMatcher().GetSinglePredicate().GetValueMatch().GetSafeRegex().GetRegex()
				if re == "" {
					continue
				}
				if x.matcher, err = regexp.Compile(re); err != nil {
					errs = append(errs, fmt.Errorf("%s: path regex: %w", where, err))
				}
			}
			cfg = m.GetExtensionConfig().GetTypedConfig()
		}
		x.config = &extprocv3.ExternalProcessor{}
		if err := cfg.UnmarshalTo(x.config); err != nil {
			errs = append(errs, fmt.Errorf("%s: not an ExternalProcessor: %w", where, err))
			continue
		}
		out = append(out, x)
	}
	return out, errors.Join(errs...)
}

// gatewayPolicy is Envoy Gateway's EnvoyExtensionPolicy
// (gateway.envoyproxy.io/v1alpha1), with the fields this repository sets,
// from its API reference; decoded strictly, so a misspelled field fails.
type gatewayPolicy struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		TargetRefs []struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"targetRefs"`
		ExtProc []struct {
			BackendRefs []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
				Port      int32  `json:"port"`
			} `json:"backendRefs"`
			FailOpen       *bool  `json:"failOpen"`
			MessageTimeout string `json:"messageTimeout"`
			ProcessingMode struct {
				AllowModeOverride bool `json:"allowModeOverride"`
				Request           *struct {
					Attributes []string `json:"attributes"`
				} `json:"request"`
			} `json:"processingMode"`
		} `json:"extProc"`
	} `json:"spec"`
}

// referenceGrant is Gateway API's ReferenceGrant (v1beta1).
type referenceGrant struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		From []struct {
			Group     string `json:"group"`
			Kind      string `json:"kind"`
			Namespace string `json:"namespace"`
		} `json:"from"`
		To []struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"to"`
	} `json:"spec"`
}

// gatewayFile is manifests/gateway/envoyextensionpolicy.yaml.
type gatewayFile struct {
	policies []*gatewayPolicy
	grants   []*referenceGrant
}

func loadGateway(path string) (*gatewayFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	g := &gatewayFile{}
	var errs []error
	for i, doc := range strings.Split(string(data), "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s document %d: %w", path, i, err))
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		_ = json.Unmarshal(js, &head)
		switch head.APIVersion + " " + head.Kind {
		case "gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy":
			p := &gatewayPolicy{}
			if err := strictJSON(js, p); err != nil {
				errs = append(errs, fmt.Errorf("%s: EnvoyExtensionPolicy: %w", path, err))
			}
			g.policies = append(g.policies, p)
		case "gateway.networking.k8s.io/v1beta1 ReferenceGrant":
			r := &referenceGrant{}
			if err := strictJSON(js, r); err != nil {
				errs = append(errs, fmt.Errorf("%s: ReferenceGrant: %w", path, err))
			}
			g.grants = append(g.grants, r)
		default:
			errs = append(errs, fmt.Errorf("%s document %d: %s %s has no type to check it against", path, i, head.APIVersion, head.Kind))
		}
	}
	return g, errors.Join(errs...)
}

// checkFilter: the ext_proc filter fails closed, reaches the Service's
// grpc port, gives the service time to answer, asks for the request
// headers only (the service asks for more), runs on exactly the filtered
// routes and on MLflow's pods, and the configuration says it is there.
func (in *install) checkFilter(c *checker) {
	var filters []envoyExtProc
	for _, ef := range in.overlay.envoyFilters {
		xs, err := decodeExtProc(ef)
		if err != nil {
			c.errorf("%v", err)
		}
		for _, x := range xs {
			filters = append(filters, x)
			in.checkExtProc(c, x)
		}
		if len(xs) > 0 {
			in.checkFilterSelector(c, ef)
		}
	}
	deployed := false
	for _, a := range in.cfg.Apps {
		deployed = deployed || a.MLflow.ExtProcFilter
	}
	if deployed && len(filters) == 0 {
		c.errorf("config.yaml sets apps[].mlflow.ext_proc_filter, but no EnvoyFilter inserts %s: runs/search would reach MLflow unnarrowed", extProcName)
	}
	if !deployed && len(filters) > 0 {
		c.errorf("an EnvoyFilter inserts %s, but no MLflow application sets ext_proc_filter: true", extProcName)
	}
	if in.gateway != nil {
		in.checkGateway(c)
	}
}

func (in *install) checkExtProc(c *checker, x envoyExtProc) {
	cfg := x.config
	if cfg.GetFailureModeAllow() {
		c.errorf("%s: failure_mode_allow must be false: an unreachable filter would pass responses unfiltered", x.source)
	}
	if cfg.GetStatusOnError().GetCode() != 503 {
		c.errorf("%s: status_on_error must be ServiceUnavailable (503)", x.source)
	}
	want := ""
	if svc := in.overlay.service("mlflow-authz", serviceName); svc != nil {
		for _, p := range svc.Spec.Ports {
			if p.Name == "grpc" {
				want = fmt.Sprintf("outbound|%d||%s.%s.svc.cluster.local", p.Port, svc.Name, svc.Namespace)
			}
		}
	}
	if got := cfg.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != want {
		c.errorf("%s: grpc_service cluster %q is not Istio's cluster for the Service's grpc port (%s)", x.source, got, want)
	}
	if mt := cfg.GetMessageTimeout().AsDuration(); cfg.GetMessageTimeout() == nil || mt <= in.cfg.ExtProc.Timeout {
		c.errorf("%s: message_timeout (%s) must be set and exceed ext_proc.timeout (%s), so the service answers before Envoy gives up", x.source, mt, in.cfg.ExtProc.Timeout)
	}
	if t := cfg.GetGrpcService().GetTimeout().AsDuration(); t != 0 && t < time.Second {
		c.errorf("%s: grpc_service timeout %s is shorter than one filtered request", x.source, t)
	}
	m := cfg.GetProcessingMode()
	if m.GetRequestHeaderMode().String() != "SEND" || m.GetResponseHeaderMode().String() != "SKIP" ||
		m.GetRequestBodyMode().String() != "NONE" || m.GetResponseBodyMode().String() != "NONE" {
		c.errorf("%s: processing_mode must send the request headers only (the service asks for the rest with mode_override)", x.source)
	}
	if !cfg.GetAllowModeOverride() {
		c.errorf("%s: allow_mode_override must be true, or the service can never see a response body", x.source)
	}
	if !slices.Contains(cfg.GetRequestAttributes(), "connection.uri_san_peer_certificate") {
		c.errorf("%s: request_attributes must include connection.uri_san_peer_certificate, or mesh workloads lose their identity in the filter", x.source)
	}
	if x.matcher == nil {
		c.errorf("%s: no path matcher: every request would pay a round trip to the filter", x.source)
		return
	}
	for _, p := range filteredSamples {
		if !x.matcher.MatchString(p) {
			c.errorf("%s: the path matcher skips %s, a filtered route: its rows would pass unfiltered", x.source, p)
		}
	}
	for _, p := range skippedSamples {
		if x.matcher.MatchString(p) {
			c.errorf("%s: the path matcher sends %s to the filter, which has nothing to do there", x.source, p)
		}
	}
}

// checkFilterSelector: the filter sits on the pods the MLflow CUSTOM policy
// protects, in its namespace.
func (in *install) checkFilterSelector(c *checker, ef *networkingv1alpha3.EnvoyFilter) {
	for _, ap := range in.overlay.authzPolicies {
		if ap.Namespace == ef.Namespace && ap.Spec.GetAction().String() == "CUSTOM" &&
			fmt.Sprint(ap.Spec.GetSelector().GetMatchLabels()) == fmt.Sprint(ef.Spec.GetWorkloadSelector().GetLabels()) {
			return
		}
	}
	c.errorf("EnvoyFilter %s/%s: workloadSelector %v selects no workload that a CUSTOM AuthorizationPolicy protects", ef.Namespace, ef.Name, ef.Spec.GetWorkloadSelector().GetLabels())
}

// checkGateway: Envoy Gateway's policy fails closed, reaches the Service's
// grpc port through a ReferenceGrant, and gives the service time.
func (in *install) checkGateway(c *checker) {
	svc := in.overlay.service("mlflow-authz", serviceName)
	for _, p := range in.gateway.policies {
		where := "EnvoyExtensionPolicy " + p.Metadata.Namespace + "/" + p.Metadata.Name
		if len(p.Spec.ExtProc) == 0 {
			c.errorf("%s: no extProc", where)
		}
		for _, x := range p.Spec.ExtProc {
			if x.FailOpen == nil || *x.FailOpen {
				c.errorf("%s: failOpen must be set to false", where)
			}
			d, err := time.ParseDuration(x.MessageTimeout)
			if err != nil || d <= in.cfg.ExtProc.Timeout {
				c.errorf("%s: messageTimeout %q must exceed ext_proc.timeout (%s)", where, x.MessageTimeout, in.cfg.ExtProc.Timeout)
			}
			if !x.ProcessingMode.AllowModeOverride || x.ProcessingMode.Request == nil {
				c.errorf("%s: processingMode must send the request headers and allow mode overrides", where)
			}
			for _, b := range x.BackendRefs {
				ok := svc != nil && b.Name == svc.Name && b.Namespace == svc.Namespace
				if ok {
					ok = false
					for _, sp := range svc.Spec.Ports {
						ok = ok || (sp.Name == "grpc" && sp.Port == b.Port)
					}
				}
				if !ok {
					c.errorf("%s: backendRef %s/%s:%d is not the Service's grpc port", where, b.Namespace, b.Name, b.Port)
				}
				granted := b.Namespace == p.Metadata.Namespace
				for _, g := range in.gateway.grants {
					for _, f := range g.Spec.From {
						for _, to := range g.Spec.To {
							granted = granted || (g.Metadata.Namespace == b.Namespace && f.Kind == "EnvoyExtensionPolicy" &&
								f.Namespace == p.Metadata.Namespace && to.Kind == "Service" && (to.Name == "" || to.Name == b.Name))
						}
					}
				}
				if !granted {
					c.errorf("%s: no ReferenceGrant lets it use Service %s/%s", where, b.Namespace, b.Name)
				}
			}
		}
	}
}

// TestNoFilterFailsOpen holds every manifest to failure_mode_allow false
// (failOpen false for Envoy Gateway): every kustomization is rendered and
// every ext_proc filter in it checked, and the gateway file too.
func TestNoFilterFailsOpen(t *testing.T) {
	dirs, err := kustomizations(".")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, dir := range dirs {
		r, err := render(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, ef := range r.envoyFilters {
			xs, err := decodeExtProc(ef)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range xs {
				found++
				if x.config.GetFailureModeAllow() {
					t.Errorf("%s (%s): failure_mode_allow is true", x.source, dir)
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("no kustomization inserts the ext_proc filter: is the walk broken?")
	}
	g, err := loadGateway("gateway/envoyextensionpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range g.policies {
		for _, x := range p.Spec.ExtProc {
			if x.FailOpen == nil || *x.FailOpen {
				t.Errorf("EnvoyExtensionPolicy %s: failOpen must be set to false", p.Metadata.Name)
			}
		}
	}
}
