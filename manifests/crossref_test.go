package manifests

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"istio.io/api/annotation"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/ops"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

// The names the checks start from: the service's Deployment, its container
// and the volume its configuration is mounted from.
const (
	serviceName   = "mlflow-authz"
	containerName = "mlflow-authz"
	providerName  = "mlflow-authz"
	configVolume  = "config"
)

// install is everything one `kubectl apply -k` of an overlay involves: the
// rendered overlay, the meshConfig fragment installed with Istio, the
// monitoring and otel-collector kustomizations, the Dockerfile the image is
// built from and the install guide that tells users which Secrets to create.
type install struct {
	overlay    *rendered
	monitoring *rendered
	collector  *rendered
	mesh       *meshv1alpha1.MeshConfig
	gateway    *gatewayFile
	dockerfile string
	installDoc string

	// Resolved while checking: the service and its loaded configuration.
	dep *appsv1.Deployment
	ctr *corev1.Container
	cfg *config.Config
}

// checker collects the problems of one install, each naming what is wrong
// and where.
type checker struct{ errs []error }

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// check runs every cross-reference check. It returns all problems, not
// just the first.
func (in *install) check() []error {
	c := &checker{}
	if !in.findService(c) {
		return c.errs
	}
	in.checkConfigLoads(c)
	if in.cfg == nil {
		return c.errs
	}
	in.checkSelectors(c)
	in.checkPorts(c)
	in.checkProbes(c)
	in.checkProvider(c)
	in.checkPolicies(c)
	in.checkSecrets(c)
	in.checkMounts(c)
	in.checkHardening(c)
	in.checkNamespaces(c)
	in.checkIstioAnnotations(c)
	in.checkDockerfile(c)
	in.checkMonitoring(c)
	in.checkCollector(c)
	in.checkFilter(c)
	return c.errs
}

func (in *install) findService(c *checker) bool {
	for _, d := range in.overlay.deployments {
		if d.Name == serviceName {
			in.dep = d
		}
	}
	if in.dep == nil {
		c.errorf("no Deployment %s", serviceName)
		return false
	}
	in.ctr = container(&in.dep.Spec.Template.Spec, containerName)
	if in.ctr == nil {
		c.errorf("Deployment %s has no container %s", serviceName, containerName)
		return false
	}
	return true
}

func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// checkConfigLoads finds the configuration the container is started with
// (--config, the volume behind that path, the ConfigMap behind the volume)
// and loads it with this build's strict loader. ${VAR} references resolve
// only to variables the container declares: Secrets' values are stand-ins.
func (in *install) checkConfigLoads(c *checker) {
	i := slices.Index(in.ctr.Args, "--config")
	if i < 0 || i+1 >= len(in.ctr.Args) {
		c.errorf("container %s: no --config FILE in args %v", containerName, in.ctr.Args)
		return
	}
	file := in.ctr.Args[i+1]
	var mount *corev1.VolumeMount
	for j, m := range in.ctr.VolumeMounts {
		if path.Dir(file) == path.Clean(m.MountPath) {
			mount = &in.ctr.VolumeMounts[j]
		}
	}
	if mount == nil || mount.Name != configVolume {
		c.errorf("container %s: --config %s is not in the %q volume's mount", containerName, file, configVolume)
		return
	}
	vol := volume(&in.dep.Spec.Template.Spec, configVolume)
	if vol == nil || vol.ConfigMap == nil {
		c.errorf("Deployment %s: volume %q is not a ConfigMap", serviceName, configVolume)
		return
	}
	cm := in.overlay.configMap(in.dep.Namespace, vol.ConfigMap.Name)
	if cm == nil {
		c.errorf("Deployment %s: volume %q names ConfigMap %s/%s, which the overlay does not produce", serviceName, configVolume, in.dep.Namespace, vol.ConfigMap.Name)
		return
	}
	if got := in.dep.Spec.Template.Annotations["checksum/config"]; got != cm.Name {
		c.errorf("Deployment %s: annotation checksum/config is %q, want the generated ConfigMap's name %q", serviceName, got, cm.Name)
	}
	data, ok := cm.Data[path.Base(file)]
	if !ok {
		c.errorf("ConfigMap %s has no key %s (the file --config reads)", cm.Name, path.Base(file))
		return
	}
	env := map[string]string{}
	for _, e := range in.ctr.Env {
		env[e.Name] = "placeholder"
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = "postgres://mlflow-authz@db.invalid/mlflow"
		}
	}
	cfg, err := config.Parse([]byte(data), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		c.errorf("ConfigMap %s: %s does not load: %w", cm.Name, path.Base(file), err)
		return
	}
	if err := buildOffline(cfg); err != nil {
		c.errorf("ConfigMap %s: %s loads, but serve would refuse it: %w", cm.Name, path.Base(file), err)
		return
	}
	in.cfg = cfg
}

// buildOffline builds the engine from cfg as `serve` does, on an empty
// SQLite store, except what needs the cluster: the issuers' keys (fetched
// over the network; Parse has checked their settings) come from a local
// stand-in JWKS, and the files and variables mounted into the pod (the
// Kiali token, the cookie keys, the client secret) are replaced by local
// stand-ins (checkMounts checks the mounts).
func buildOffline(cfg *config.Config) error {
	dir, err := os.MkdirTemp("", "mlflow-authz-manifests-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db := filepath.Join(dir, "mlflow.db")
	if err := sqlite.Migrate(ctx, db); err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, sqlite.Config{TrackingPath: db})
	if err != nil {
		return err
	}
	defer st.Close()
	standIn := func(name, content string) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte(content), 0o600)
	}
	token, err := standIn("token", "stand-in")
	if err != nil {
		return err
	}
	secret, err := standIn("client-secret", "stand-in")
	if err != nil {
		return err
	}
	keys, err := standIn("session-keys", base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")
	if err != nil {
		return err
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer jwks.Close()
	offline := *cfg
	offline.Issuers = slices.Clone(cfg.Issuers)
	for i := range offline.Issuers {
		offline.Issuers[i].DiscoveryURL = ""
		offline.Issuers[i].JWKSURL = jwks.URL
	}
	if offline.Session.KeysFile != "" {
		offline.Session.KeysFile = keys
	}
	offline.Apps = slices.Clone(cfg.Apps)
	for i := range offline.Apps {
		a := &offline.Apps[i]
		if a.Upstream.TokenFile != "" {
			a.Upstream.TokenFile = token
		}
		if a.Login.ClientSecretFile != "" || a.Login.ClientSecretEnv != "" {
			a.Login.ClientSecretFile, a.Login.ClientSecretEnv = secret, ""
		}
	}
	rt, err := config.Build(ctx, &offline, cache.New(st, cfg.Store.Cache), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	rt.Close()
	return nil
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func (r *rendered) configMap(ns, name string) *corev1.ConfigMap {
	for _, cm := range r.configMaps {
		if cm.Namespace == ns && cm.Name == name {
			return cm
		}
	}
	return nil
}

func (r *rendered) service(ns, name string) *corev1.Service {
	for _, s := range r.services {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

// selects reports whether sel selects a pod with these labels.
func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(podLabels))
}

// checkSelectors: everything that points at the service's pods reaches them.
func (in *install) checkSelectors(c *checker) {
	pod := in.dep.Spec.Template.Labels
	if !selects(in.dep.Spec.Selector, pod) {
		c.errorf("Deployment %s: selector %v does not select its own pod labels %v", serviceName, in.dep.Spec.Selector.MatchLabels, pod)
	}
	svc := in.overlay.service(in.dep.Namespace, serviceName)
	if svc == nil {
		c.errorf("no Service %s/%s", in.dep.Namespace, serviceName)
	} else if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod)) {
		c.errorf("Service %s: selector %v does not match the pod labels %v", svc.Name, svc.Spec.Selector, pod)
	}
	found := false
	for _, p := range in.overlay.pdbs {
		if p.Namespace == in.dep.Namespace && selects(p.Spec.Selector, pod) {
			found = true
		}
	}
	if !found {
		c.errorf("no PodDisruptionBudget selects the pods of %s", serviceName)
	}
	found = false
	for _, h := range in.overlay.hpas {
		t := h.Spec.ScaleTargetRef
		if h.Namespace == in.dep.Namespace && t.Kind == "Deployment" && t.Name == serviceName && t.APIVersion == "apps/v1" {
			found = true
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
				c.errorf("HorizontalPodAutoscaler %s: minReplicas must be at least 2", h.Name)
			}
		}
	}
	if !found {
		c.errorf("no HorizontalPodAutoscaler scales Deployment %s", serviceName)
	}
	found = false
	for _, np := range in.overlay.networkPolicies {
		if np.Namespace != in.dep.Namespace || !selects(&np.Spec.PodSelector, pod) {
			continue
		}
		found = true
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.Type == intstr.String && containerPort(in.ctr, p.Port.StrVal) == 0 {
					c.errorf("NetworkPolicy %s: port %q is not a port of container %s", np.Name, p.Port.StrVal, containerName)
				}
			}
		}
	}
	if !found {
		c.errorf("no NetworkPolicy selects the pods of %s", serviceName)
	}
	for _, pa := range in.overlay.peerAuths {
		if pa.Namespace != in.dep.Namespace || pa.Spec.Selector == nil {
			continue
		}
		if !labels.SelectorFromSet(pa.Spec.Selector.MatchLabels).Matches(labels.Set(pod)) {
			c.errorf("PeerAuthentication %s: selector %v does not match the pod labels %v", pa.Name, pa.Spec.Selector.MatchLabels, pod)
		}
		for port := range pa.Spec.PortLevelMtls {
			if !hasContainerPort(in.ctr, int32(port)) {
				c.errorf("PeerAuthentication %s: portLevelMtls %d is not a port of container %s", pa.Name, port, containerName)
			}
		}
	}
	for _, b := range in.overlay.clusterBindings {
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && !in.overlay.hasServiceAccount(s.Namespace, s.Name) {
				c.errorf("ClusterRoleBinding %s: ServiceAccount %s/%s is not in the overlay", b.Name, s.Namespace, s.Name)
			}
		}
	}
}

func (r *rendered) hasServiceAccount(ns, name string) bool {
	for _, sa := range r.serviceAccounts {
		if sa.Namespace == ns && sa.Name == name {
			return true
		}
	}
	return false
}

func containerPort(ctr *corev1.Container, name string) int32 {
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func hasContainerPort(ctr *corev1.Container, port int32) bool {
	for _, p := range ctr.Ports {
		if p.ContainerPort == port {
			return true
		}
	}
	return false
}

// listenPort returns the port of a host:port listen address.
func listenPort(addr string) int32 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return int32(n)
}

// checkPorts: the Service's grpc port reaches the container port the
// configuration's grpc_addr listens on, over HTTP/2; same for the
// operations port.
func (in *install) checkPorts(c *checker) {
	want := map[string]int32{"grpc": listenPort(in.cfg.Server.GRPCAddr), "http-ops": listenPort(in.cfg.Server.HTTPAddr)}
	for name, port := range want {
		if got := containerPort(in.ctr, name); got != port {
			c.errorf("container port %q is %d, but the configuration listens on %d", name, got, port)
		}
	}
	svc := in.overlay.service(in.dep.Namespace, serviceName)
	if svc == nil {
		return
	}
	for _, p := range svc.Spec.Ports {
		if p.Name != "grpc" {
			continue
		}
		if p.AppProtocol == nil || *p.AppProtocol != "grpc" {
			c.errorf("Service %s: port grpc needs appProtocol: grpc, or Envoy will not speak HTTP/2 to it", svc.Name)
		}
		if p.TargetPort.Type != intstr.String || containerPort(in.ctr, p.TargetPort.StrVal) != want["grpc"] {
			c.errorf("Service %s: port grpc targets %s, not the container port the configuration's grpc_addr listens on (%d)", svc.Name, p.TargetPort.String(), want["grpc"])
		}
		return
	}
	c.errorf("Service %s has no port named grpc", svc.Name)
}

// checkProbes: readiness on /readyz and liveness on /healthz, on the port
// the operations handler listens on, and both paths really served by it.
func (in *install) checkProbes(c *checker) {
	handler := (&ops.Health{}).Handler(ops.Options{})
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", in.ctr.ReadinessProbe, "/readyz"}, {"livenessProbe", in.ctr.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			c.errorf("container %s: no HTTP %s", containerName, p.kind)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			c.errorf("container %s: %s path is %q, want %q", containerName, p.kind, g.Path, p.path)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, g.Path, nil))
		if rec.Code == http.StatusNotFound {
			c.errorf("container %s: %s path %q is not served by the operations port", containerName, p.kind, g.Path)
		}
		port := g.Port.IntVal
		if g.Port.Type == intstr.String {
			port = containerPort(in.ctr, g.Port.StrVal)
		}
		if want := listenPort(in.cfg.Server.HTTPAddr); port != want {
			c.errorf("container %s: %s port %s is %d, but server.http_addr listens on %d", containerName, p.kind, g.Port.String(), port, want)
		}
	}
	grace := time.Duration(0)
	if s := in.dep.Spec.Template.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	if grace <= in.cfg.Server.ShutdownGrace {
		c.errorf("Deployment %s: terminationGracePeriodSeconds (%s) must exceed server.shutdown_grace (%s)", serviceName, grace, in.cfg.Server.ShutdownGrace)
	}
}

// provider returns the mesh's extension provider named name.
func (in *install) provider(name string) *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider {
	for _, p := range in.mesh.GetExtensionProviders() {
		if p.GetName() == name {
			return p.GetEnvoyExtAuthzGrpc()
		}
	}
	return nil
}

// checkProvider: the mesh's provider points at the Service's grpc port, fails
// closed, times out after the service would, and sends bodies the service
// accepts.
func (in *install) checkProvider(c *checker) {
	p := in.provider(providerName)
	if p == nil {
		c.errorf("meshConfig: no envoyExtAuthzGrpc extension provider named %q", providerName)
		return
	}
	host := p.GetService()
	if i := strings.Index(host, "/"); i >= 0 { // "<namespace>/<host>"
		host = host[i+1:]
	}
	name, ns, _ := strings.Cut(strings.TrimSuffix(host, ".svc.cluster.local"), ".")
	svc := in.overlay.service(ns, name)
	if svc == nil {
		c.errorf("meshConfig provider %s: service %q is no Service of the overlay", providerName, p.GetService())
	} else {
		ok := false
		for _, sp := range svc.Spec.Ports {
			ok = ok || (sp.Name == "grpc" && uint32(sp.Port) == p.GetPort())
		}
		if !ok {
			c.errorf("meshConfig provider %s: port %d is not Service %s's grpc port", providerName, p.GetPort(), svc.Name)
		}
	}
	if p.GetFailOpen() {
		c.errorf("meshConfig provider %s: failOpen must be false", providerName)
	}
	if p.GetStatusOnError() != "503" {
		c.errorf("meshConfig provider %s: statusOnError must be \"503\"", providerName)
	}
	timeout := p.GetTimeout().AsDuration()
	if p.GetTimeout() == nil || timeout <= in.cfg.Server.CheckTimeout {
		c.errorf("meshConfig provider %s: timeout (%s) must be set and exceed server.check_timeout (%s), so the service answers before Envoy gives up", providerName, timeout, in.cfg.Server.CheckTimeout)
	}
	body := p.GetIncludeRequestBodyInCheck()
	switch {
	case body == nil:
		c.errorf("meshConfig provider %s: includeRequestBodyInCheck is required (MLflow reads ids from JSON bodies)", providerName)
	case !body.GetAllowPartialMessage():
		c.errorf("meshConfig provider %s: allowPartialMessage must be true, or bodies above maxRequestBytes get 413", providerName)
	case body.GetMaxRequestBytes() < 1<<20:
		c.errorf("meshConfig provider %s: maxRequestBytes %d is below MLflow's 1 MB log-batch", providerName, body.GetMaxRequestBytes())
	case int(body.GetMaxRequestBytes())+64<<10 > in.cfg.Server.MaxRecvMsgSize:
		c.errorf("meshConfig provider %s: maxRequestBytes %d plus headers does not fit server.max_recv_msg_size %d", providerName, body.GetMaxRequestBytes(), in.cfg.Server.MaxRecvMsgSize)
	}
	if n := in.mesh.GetPathNormalization().GetNormalization(); n == meshv1alpha1.MeshConfig_ProxyPathNormalization_NONE {
		c.errorf("meshConfig: pathNormalization NONE leaves dot segments unresolved")
	} else if in.mesh.GetPathNormalization() == nil {
		c.errorf("meshConfig: set pathNormalization explicitly")
	}
}

// checkPolicies: every AuthorizationPolicy is CUSTOM with our provider (which
// exists), and every application reachable by a cluster-local host has one
// in that host's namespace.
func (in *install) checkPolicies(c *checker) {
	customIn := map[string]bool{}
	for _, ap := range in.overlay.authzPolicies {
		if ap.Spec.GetAction().String() != "CUSTOM" {
			continue
		}
		name := ap.Spec.GetProvider().GetName()
		if in.provider(name) == nil {
			c.errorf("AuthorizationPolicy %s/%s: provider %q is not an extension provider in meshConfig", ap.Namespace, ap.Name, name)
		}
		if len(ap.Spec.GetRules()) == 0 {
			c.errorf("AuthorizationPolicy %s/%s: a CUSTOM policy without rules selects nothing", ap.Namespace, ap.Name)
		}
		customIn[ap.Namespace] = true
	}
	for _, app := range in.cfg.Apps {
		for _, h := range app.Hosts {
			rest, ok := strings.CutSuffix(h, ".svc.cluster.local")
			if !ok {
				continue
			}
			if _, ns, ok := strings.Cut(rest, "."); ok && !customIn[ns] {
				c.errorf("app %s serves %s, but no CUSTOM AuthorizationPolicy in namespace %s sends its requests to mlflow-authz", app.Name, h, ns)
			}
		}
	}
}

// secretRef is one key of one Secret a pod reads.
type secretRef struct {
	namespace, name, key, from string
	optional                   bool
}

func podSecrets(ns, owner string, spec *corev1.PodSpec) []secretRef {
	var refs []secretRef
	for _, ctr := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		for _, e := range ctr.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				s := e.ValueFrom.SecretKeyRef
				refs = append(refs, secretRef{ns, s.Name, s.Key, owner + " env " + e.Name, s.Optional != nil && *s.Optional})
			}
		}
		for _, ef := range ctr.EnvFrom {
			if ef.SecretRef != nil {
				refs = append(refs, secretRef{ns, ef.SecretRef.Name, "", owner + " envFrom", ef.SecretRef.Optional != nil && *ef.SecretRef.Optional})
			}
		}
	}
	for _, v := range spec.Volumes {
		from := owner + " volume " + v.Name
		if s := v.Secret; s != nil {
			refs = append(refs, volumeSecretRefs(ns, s.SecretName, from, s.Items, s.Optional)...)
		}
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if s := src.Secret; s != nil {
				refs = append(refs, volumeSecretRefs(ns, s.Name, from, s.Items, s.Optional)...)
			}
		}
	}
	return refs
}

// volumeSecretRefs are the keys a Secret volume reads: every key it lists
// (the kubelet fails the mount without one), or the whole Secret.
func volumeSecretRefs(ns, name, from string, items []corev1.KeyToPath, optional *bool) []secretRef {
	opt := optional != nil && *optional
	if len(items) == 0 {
		return []secretRef{{ns, name, "", from, opt}}
	}
	var refs []secretRef
	for _, it := range items {
		refs = append(refs, secretRef{ns, name, it.Key, from, opt})
	}
	return refs
}

// documentedSecrets reads the `kubectl create secret generic` commands in
// the install guide: namespace/name → the keys it creates.
func documentedSecrets(doc string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	joined := strings.ReplaceAll(doc, "\\\n", " ")
	cmd := regexp.MustCompile(`kubectl\s+(?:-n\s+(\S+)\s+|--namespace[= ](\S+)\s+)?create secret generic (\S+)([^\n]*)`)
	key := regexp.MustCompile(`--from-(?:literal|file)=([A-Za-z0-9._-]+)=`)
	for _, m := range cmd.FindAllStringSubmatch(joined, -1) {
		ns := m[1] + m[2]
		keys := map[string]bool{}
		for _, k := range key.FindAllStringSubmatch(m[4], -1) {
			keys[k[1]] = true
		}
		out[ns+"/"+m[3]] = keys
	}
	return out
}

// checkSecrets: every Secret a pod reads is produced by the overlay or
// created by a command in docs/install.md, with every key it needs.
func (in *install) checkSecrets(c *checker) {
	var refs []secretRef
	for _, d := range in.overlay.deployments {
		refs = append(refs, podSecrets(d.Namespace, "Deployment "+d.Name, &d.Spec.Template.Spec)...)
	}
	for _, j := range in.overlay.jobs {
		refs = append(refs, podSecrets(j.Namespace, "Job "+j.Name, &j.Spec.Template.Spec)...)
	}
	docs := documentedSecrets(in.installDoc)
	missing := map[string]bool{} // reported once per Secret, not per key
	for _, r := range refs {
		produced := false
		for _, s := range in.overlay.secrets {
			if s.Namespace == r.namespace && s.Name == r.name {
				_, inData := s.Data[r.key]
				_, inString := s.StringData[r.key]
				produced = r.key == "" || inData || inString || r.optional
				if !produced {
					c.errorf("%s reads key %q of Secret %s/%s, which the overlay produces without it", r.from, r.key, r.namespace, r.name)
				}
				produced = true
			}
		}
		if produced {
			continue
		}
		keys, documented := docs[r.namespace+"/"+r.name]
		switch {
		case !documented && !r.optional && !missing[r.from+" "+r.name]:
			missing[r.from+" "+r.name] = true
			c.errorf("%s reads Secret %s/%s: the overlay does not produce it and docs/install.md has no `kubectl -n %s create secret generic %s` for the user to create it", r.from, r.namespace, r.name, r.namespace, r.name)
		case documented && r.key != "" && !r.optional && !keys[r.key]:
			c.errorf("%s reads key %q of Secret %s/%s, but docs/install.md creates it without that key", r.from, r.key, r.namespace, r.name)
		}
	}
}

// mountedFile is what provides one file in the container.
type mountedFile struct {
	volume      string // the volume whose mount holds it; "" when none does
	secret, key string // the Secret key behind it, when a Secret does
	token       bool   // a projected service-account token
}

// fileAt resolves the file at p in the container to the volume item that
// provides it. A mount that covers p without such an item names its volume
// and nothing else.
func (in *install) fileAt(p string) mountedFile {
	spec := &in.dep.Spec.Template.Spec
	for _, m := range in.ctr.VolumeMounts {
		v := volume(spec, m.Name)
		if v == nil {
			continue
		}
		// rel is p's path inside the volume.
		var rel string
		switch p, mp := path.Clean(p), path.Clean(m.MountPath); {
		case p == mp && m.SubPath != "":
			rel = path.Clean(m.SubPath)
		case strings.HasPrefix(p, mp+"/"):
			rel = path.Join(m.SubPath, strings.TrimPrefix(p, mp+"/"))
		default:
			continue
		}
		f := mountedFile{volume: v.Name}
		keyAt := func(secret string, items []corev1.KeyToPath) {
			for _, it := range items {
				if path.Clean(it.Path) == rel {
					f.secret, f.key = secret, it.Key
				}
			}
			if len(items) == 0 && !strings.Contains(rel, "/") {
				f.secret, f.key = secret, rel
			}
		}
		switch {
		case v.Secret != nil:
			keyAt(v.Secret.SecretName, v.Secret.Items)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					keyAt(src.Secret.Name, src.Secret.Items)
				}
				if t := src.ServiceAccountToken; t != nil && path.Clean(t.Path) == rel {
					f.token = true
				}
			}
		}
		return f
	}
	return mountedFile{}
}

// checkMounts: every file the configuration reads is a file of a volume
// mounted into the container, and the secrets among them come from
// Secrets (checkSecrets then holds those keys to the install guide).
func (in *install) checkMounts(c *checker) {
	type file struct{ key, path string }
	var secrets []file
	if in.cfg.Session.KeysFile != "" {
		secrets = append(secrets, file{"session.keys_file", in.cfg.Session.KeysFile})
	}
	for i, app := range in.cfg.Apps {
		l := app.Login
		if !l.Enabled {
			continue
		}
		key := fmt.Sprintf("apps[%d] (%s): login.client_secret", i, app.Name)
		if l.ClientSecretFile != "" {
			secrets = append(secrets, file{key + "_file", l.ClientSecretFile})
		}
		if l.ClientSecretEnv != "" && !slices.ContainsFunc(in.ctr.Env, func(e corev1.EnvVar) bool {
			return e.Name == l.ClientSecretEnv && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}) {
			c.errorf("%s_env: container %s sets no variable %s from a Secret", key, containerName, l.ClientSecretEnv)
		}
	}
	for _, s := range secrets {
		switch f := in.fileAt(s.path); {
		case f.volume == "":
			c.errorf("%s %s is on no volume mounted into container %s", s.key, s.path, containerName)
		case f.secret == "":
			c.errorf("%s %s is in the mount of volume %q, but no key of a Secret in that volume is there", s.key, s.path, f.volume)
		}
	}
	for i, app := range in.cfg.Apps {
		f := app.Upstream.TokenFile
		if f == "" {
			continue
		}
		if mf := in.fileAt(f); mf.volume == "" {
			c.errorf("apps[%d] (%s): upstream.token_file %s is on no volume mounted into container %s", i, app.Name, f, containerName)
		} else if !mf.token && mf.secret == "" {
			c.errorf("apps[%d] (%s): upstream.token_file %s is in the mount of volume %q, but no token or Secret key of that volume is there", i, app.Name, f, mf.volume)
		}
	}
}

// checkHardening holds every pod of the install to what a security review
// asks first.
func (in *install) checkHardening(c *checker) {
	type pod struct {
		owner string
		spec  *corev1.PodSpec
	}
	var pods []pod
	for _, d := range in.overlay.deployments {
		pods = append(pods, pod{"Deployment " + d.Name, &d.Spec.Template.Spec})
	}
	for _, j := range in.overlay.jobs {
		pods = append(pods, pod{"Job " + j.Name, &j.Spec.Template.Spec})
	}
	for _, p := range pods {
		s := p.spec
		if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
			c.errorf("%s: automountServiceAccountToken must be false", p.owner)
		}
		psc := s.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			c.errorf("%s: the pod must set runAsNonRoot: true and seccompProfile RuntimeDefault", p.owner)
		}
		for _, v := range s.Volumes {
			if v.Secret == nil {
				continue
			}
			// The kubelet's default is 0644, files owned by root.
			mode := int32(0o644)
			if v.Secret.DefaultMode != nil {
				mode = *v.Secret.DefaultMode
			}
			switch {
			case mode&0o007 != 0:
				c.errorf("%s: Secret volume %s: defaultMode %#o lets every user read it; 0440 with the pod's fsGroup", p.owner, v.Name, mode)
			case mode&0o040 == 0 || psc == nil || psc.FSGroup == nil:
				c.errorf("%s: Secret volume %s: the non-root user reads it only through the group: defaultMode 0440 and an fsGroup", p.owner, v.Name)
			}
		}
		for _, ctr := range s.Containers {
			sc := ctr.SecurityContext
			switch {
			case sc == nil:
				c.errorf("%s: container %s has no securityContext", p.owner, ctr.Name)
				continue
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				c.errorf("%s: container %s needs readOnlyRootFilesystem: true", p.owner, ctr.Name)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				c.errorf("%s: container %s needs allowPrivilegeEscalation: false", p.owner, ctr.Name)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
				c.errorf("%s: container %s must drop ALL capabilities and add none", p.owner, ctr.Name)
			}
			r := ctr.Resources
			if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
				c.errorf("%s: container %s needs CPU and memory requests and a memory limit", p.owner, ctr.Name)
			}
			if strings.HasSuffix(ctr.Image, ":latest") || !strings.Contains(ctr.Image, ":") {
				c.errorf("%s: container %s: image %q must name a version", p.owner, ctr.Name, ctr.Image)
			}
		}
	}
	d := in.dep.Spec
	if d.Replicas == nil || *d.Replicas < 2 {
		c.errorf("Deployment %s: at least 2 replicas", serviceName)
	}
	if len(d.Template.Spec.TopologySpreadConstraints) == 0 {
		c.errorf("Deployment %s: needs topologySpreadConstraints", serviceName)
	}
	for _, t := range d.Template.Spec.TopologySpreadConstraints {
		if t.LabelSelector == nil || !selects(t.LabelSelector, d.Template.Labels) {
			c.errorf("Deployment %s: topology spread on %s does not select its own pods", serviceName, t.TopologyKey)
		}
	}
}

// checkNamespaces: every namespaced object names its namespace (otherwise
// kubectl puts it in the current context's), and nothing but the service's
// own objects is in the service's namespace.
func (in *install) checkNamespaces(c *checker) {
	cluster := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}
	for _, r := range []*rendered{in.overlay, in.monitoring, in.collector} {
		for _, o := range r.objects {
			kind, rest, _ := strings.Cut(o, "/")
			ns, _, _ := strings.Cut(rest, "/")
			if !cluster[kind] && ns == "" {
				c.errorf("%s: %s has no namespace", r.dir, o)
			}
		}
	}
	for _, ap := range in.overlay.authzPolicies {
		if ap.Namespace == in.dep.Namespace {
			c.errorf("AuthorizationPolicy %s is in mlflow-authz's own namespace, where it protects nothing (was a kustomization `namespace:` added?)", ap.Name)
		}
	}
	// docs/install.md applies everything but these first, so that no
	// request is sent to mlflow-authz (or locked out by STRICT mTLS) before
	// it is ready.
	policy := func(kind string, meta metav1.ObjectMeta) {
		if meta.Namespace != in.dep.Namespace && meta.Labels[policyLabel] != policyValue {
			c.errorf("%s %s/%s acts outside mlflow-authz's namespace but lacks the label %s=%s that the install guide's two-step apply relies on", kind, meta.Namespace, meta.Name, policyLabel, policyValue)
		}
	}
	for _, ap := range in.overlay.authzPolicies {
		policy("AuthorizationPolicy", ap.ObjectMeta)
	}
	for _, pa := range in.overlay.peerAuths {
		policy("PeerAuthentication", pa.ObjectMeta)
	}
	for _, np := range in.overlay.networkPolicies {
		policy("NetworkPolicy", np.ObjectMeta)
	}
	if !strings.Contains(in.installDoc, "-l "+policyLabel+"!="+policyValue) {
		c.errorf("docs/install.md does not apply the install without the %s=%s objects first", policyLabel, policyValue)
	}
}

// The label of the objects that change what happens to other workloads'
// traffic.
const (
	policyLabel = "app.kubernetes.io/component"
	policyValue = "mesh-policy"
)

// checkIstioAnnotations: an Istio annotation with a typo is silently
// ignored, so every *.istio.io annotation on a pod must be one Istio knows.
func (in *install) checkIstioAnnotations(c *checker) {
	known := map[string]bool{}
	for _, a := range annotation.AllResourceAnnotations() {
		known[a.Name] = true
	}
	check := func(owner string, meta metav1.ObjectMeta) {
		for k := range meta.Annotations {
			if strings.Contains(k, "istio.io/") && !known[k] {
				c.errorf("%s: annotation %q is not an Istio annotation", owner, k)
			}
		}
	}
	for _, d := range in.overlay.deployments {
		check("Deployment "+d.Name, d.Spec.Template.ObjectMeta)
	}
	for _, j := range in.overlay.jobs {
		check("Job "+j.Name, j.Spec.Template.ObjectMeta)
	}
}

// checkDockerfile: the image runs as the user the pods expect, and is built
// static, trimmed and versioned.
func (in *install) checkDockerfile(c *checker) {
	if in.dockerfile == "" {
		c.errorf("no Dockerfile")
		return
	}
	for _, want := range []string{"-trimpath", "CGO_ENABLED=0", "-X main.version=", "-X main.commit=", "gcr.io/distroless/static"} {
		if !strings.Contains(in.dockerfile, want) {
			c.errorf("Dockerfile: no %q", want)
		}
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\d+)`).FindAllStringSubmatch(in.dockerfile, -1)
	if len(users) == 0 {
		c.errorf("Dockerfile: the final stage needs a numeric USER")
		return
	}
	uid := users[len(users)-1][1]
	if sc := in.dep.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != uid {
		c.errorf("Deployment %s: runAsUser must be the image's USER %s", serviceName, uid)
	}
}

// checkMonitoring: Prometheus scrapes the service's operations port, and the
// latency alert fires at the configured check timeout.
func (in *install) checkMonitoring(c *checker) {
	pod := in.dep.Spec.Template.Labels
	found := false
	for _, pm := range in.monitoring.podMonitors {
		if pm.Namespace != in.dep.Namespace || !selects(&pm.Spec.Selector, pod) {
			continue
		}
		found = true
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || containerPort(in.ctr, *ep.Port) != listenPort(in.cfg.Server.HTTPAddr) {
				c.errorf("PodMonitor %s: endpoint port is not the operations port (server.http_addr)", pm.Name)
			}
		}
	}
	if !found {
		c.errorf("no PodMonitor selects the pods of %s", serviceName)
	}
	threshold := regexp.MustCompile(`mlflow_authz_check_duration_seconds_bucket.*>\s*([0-9.]+)\s*$`)
	found = false
	for _, pr := range in.monitoring.prometheusRules {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				m := threshold.FindStringSubmatch(strings.TrimSpace(r.Expr.String()))
				if m == nil {
					continue
				}
				found = true
				secs, _ := strconv.ParseFloat(m[1], 64)
				if want := in.cfg.Server.CheckTimeout.Seconds(); secs != want {
					c.errorf("alert %s: threshold %gs is not server.check_timeout (%gs)", r.Alert, secs, want)
				}
			}
		}
	}
	if !found {
		c.errorf("no latency alert on mlflow_authz_check_duration_seconds")
	}
}

// checkCollector: the example collector's mesh identity is a trace writer of
// every application it exports to, at a host that application serves.
func (in *install) checkCollector(c *checker) {
	var dep *appsv1.Deployment
	for _, d := range in.collector.deployments {
		dep = d
	}
	if dep == nil {
		c.errorf("the otel-collector example has no Deployment")
		return
	}
	id := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", in.cfg.SPIFFE.TrustDomain, dep.Namespace, dep.Spec.Template.Spec.ServiceAccountName)
	var otel struct {
		Exporters map[string]struct {
			TracesEndpoint string `json:"traces_endpoint"`
		} `json:"exporters"`
	}
	for _, cm := range in.collector.configMaps {
		for _, data := range cm.Data {
			if err := yaml.Unmarshal([]byte(data), &otel); err != nil {
				c.errorf("otel-collector ConfigMap %s: %v", cm.Name, err)
			}
		}
	}
	if len(otel.Exporters) == 0 {
		c.errorf("the otel-collector example exports nowhere")
	}
	for name, e := range otel.Exporters {
		u, err := url.Parse(e.TracesEndpoint)
		if err != nil || u.Path != "/v1/traces" {
			c.errorf("otel-collector exporter %s: traces_endpoint %q is not a /v1/traces URL", name, e.TracesEndpoint)
			continue
		}
		var app *config.AppConfig
		for i := range in.cfg.Apps {
			if slices.Contains(in.cfg.Apps[i].Hosts, u.Hostname()) {
				app = &in.cfg.Apps[i]
			}
		}
		switch {
		case app == nil:
			c.errorf("otel-collector exporter %s: host %s is no application's host (it would be denied unknown_host)", name, u.Hostname())
		case !slices.Contains(app.TraceWriters, id):
			c.errorf("otel-collector exporter %s: app %s does not list the collector's identity %s in trace_writers", name, app.Name, id)
		}
	}
}

// load renders and reads everything under root (a copy of this directory)
// the way a user installs it, with the guide and Dockerfile given.
func load(root, installDoc, dockerfile string) (*install, error) {
	in := &install{}
	var errs []error
	var err error
	if in.overlay, err = render(root + "/overlays/example"); err != nil {
		errs = append(errs, err)
	}
	if in.monitoring, err = render(root + "/monitoring"); err != nil {
		errs = append(errs, err)
	}
	if in.collector, err = render(root + "/examples/otel-collector"); err != nil {
		errs = append(errs, err)
	}
	if in.mesh, err = meshFragment(root + "/istio/meshconfig.yaml"); err != nil {
		errs = append(errs, err)
	}
	if in.gateway, err = loadGateway(root + "/gateway/envoyextensionpolicy.yaml"); err != nil {
		errs = append(errs, err)
	}
	if data, err := os.ReadFile(installDoc); err != nil {
		errs = append(errs, err)
	} else {
		in.installDoc = string(data)
	}
	if data, err := os.ReadFile(dockerfile); err != nil {
		errs = append(errs, err)
	} else {
		in.dockerfile = string(data)
	}
	return in, errors.Join(errs...)
}
