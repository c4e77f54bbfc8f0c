package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	//lint:ignore SA1019 Istio decodes its resources and mesh config with this package (time.ParseDuration durations such as "500ms"); google.golang.org/protobuf/encoding/protojson would reject them.
	"github.com/golang/protobuf/jsonpb"
	"github.com/golang/protobuf/proto" //lint:ignore SA1019 jsonpb's message type.
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// rendered is one kustomization's output, every object decoded strictly
// into its upstream Go type.
type rendered struct {
	dir string

	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	jobs            []*batchv1.Job
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	networkPolicies []*networkingv1.NetworkPolicy
	clusterRoles    []*rbacv1.ClusterRole
	clusterBindings []*rbacv1.ClusterRoleBinding
	authzPolicies   []*securityv1.AuthorizationPolicy
	peerAuths       []*securityv1.PeerAuthentication
	envoyFilters    []*networkingv1alpha3.EnvoyFilter
	podMonitors     []*monitoringv1.PodMonitor
	prometheusRules []*monitoringv1.PrometheusRule

	// objects names every object as kind/namespace/name, in output order.
	objects []string
}

// render builds the kustomization in dir with kustomize's Go API, as
// `kubectl apply -k dir` would, and decodes every object strictly.
func render(dir string) (*rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out := &rendered{dir: dir}
	var errs []error
	for _, res := range resMap.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		if err := out.add(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s/%s %s: %w", dir, res.GetKind(), res.GetNamespace(), res.GetName(), err))
		}
	}
	return out, errors.Join(errs...)
}

// add decodes one object by its apiVersion and kind.
func (r *rendered) add(data []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	r.objects = append(r.objects, head.Kind+"/"+head.Metadata.Namespace+"/"+head.Metadata.Name)
	switch head.APIVersion + " " + head.Kind {
	case "v1 Namespace":
		return decodeInto(data, &r.namespaces)
	case "v1 ServiceAccount":
		return decodeInto(data, &r.serviceAccounts)
	case "v1 ConfigMap":
		return decodeInto(data, &r.configMaps)
	case "v1 Secret":
		return decodeInto(data, &r.secrets)
	case "v1 Service":
		return decodeInto(data, &r.services)
	case "apps/v1 Deployment":
		return decodeInto(data, &r.deployments)
	case "batch/v1 Job":
		return decodeInto(data, &r.jobs)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(data, &r.pdbs)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return decodeInto(data, &r.hpas)
	case "networking.k8s.io/v1 NetworkPolicy":
		return decodeInto(data, &r.networkPolicies)
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return decodeInto(data, &r.clusterRoles)
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return decodeInto(data, &r.clusterBindings)
	case "security.istio.io/v1 AuthorizationPolicy":
		ap, err := decodeIstio[securityv1.AuthorizationPolicy](data, func(o *securityv1.AuthorizationPolicy) proto.Message { return &o.Spec })
		r.authzPolicies = append(r.authzPolicies, ap)
		return err
	case "security.istio.io/v1 PeerAuthentication":
		pa, err := decodeIstio[securityv1.PeerAuthentication](data, func(o *securityv1.PeerAuthentication) proto.Message { return &o.Spec })
		r.peerAuths = append(r.peerAuths, pa)
		return err
	case "networking.istio.io/v1alpha3 EnvoyFilter":
		ef, err := decodeIstio[networkingv1alpha3.EnvoyFilter](data, func(o *networkingv1alpha3.EnvoyFilter) proto.Message { return &o.Spec })
		r.envoyFilters = append(r.envoyFilters, ef)
		return err
	case "monitoring.coreos.com/v1 PodMonitor":
		return decodeInto(data, &r.podMonitors)
	case "monitoring.coreos.com/v1 PrometheusRule":
		return decodeInto(data, &r.prometheusRules)
	}
	return fmt.Errorf("apiVersion %q kind %q: no upstream type to check it against; add one to rendered.add", head.APIVersion, head.Kind)
}

// decodeInto decodes data strictly into a new T and appends it to *list.
func decodeInto[T any](data []byte, list *[]*T) error {
	obj := new(T)
	*list = append(*list, obj)
	return strictJSON(data, obj)
}

// strictJSON decodes as the API server does, and stricter: field names are
// case-sensitive, and unknown or duplicate fields are errors.
func strictJSON(data []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeIstio decodes an Istio resource. Istio's generated JSON decoders
// ignore unknown fields in spec (jsonpb with AllowUnknownFields), so the
// spec is decoded a second time with them refused.
func decodeIstio[T any](data []byte, spec func(*T) proto.Message) (*T, error) {
	obj := new(T)
	if err := strictJSON(data, obj); err != nil {
		return obj, err
	}
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return obj, err
	}
	if len(raw.Spec) == 0 {
		return obj, errors.New("no spec")
	}
	if err := strictProto(raw.Spec, spec(obj)); err != nil {
		return obj, fmt.Errorf("spec: %w", err)
	}
	return obj, nil
}

// strictProto decodes JSON into an Istio API message the way Istio reads
// its configuration, refusing unknown fields.
func strictProto(data []byte, m proto.Message) error {
	u := jsonpb.Unmarshaler{AllowUnknownFields: false}
	return u.Unmarshal(bytes.NewReader(data), m)
}

// meshFragment reads a file holding `meshConfig:` (istiod's Helm values, or
// an IstioOperator's spec) and decodes it strictly into Istio's MeshConfig.
func meshFragment(path string) (*meshv1alpha1.MeshConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for k := range top {
		if k != "meshConfig" {
			return nil, fmt.Errorf("%s: unexpected top-level key %q (only meshConfig)", path, k)
		}
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := strictProto(top["meshConfig"], mc); err != nil {
		return nil, fmt.Errorf("%s: meshConfig: %w", path, err)
	}
	return mc, nil
}

// kustomizations lists every directory under root holding a kustomization
// that is meant to be applied (not a component, which only works inside
// one).
func kustomizations(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), "\nkind: Component") {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	return dirs, err
}
