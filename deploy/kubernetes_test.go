package deploy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// objects are one kustomization's output, decoded.
type objects struct {
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	podMonitors  []*monitoringv1.PodMonitor
	scaledObject []*unstructured.Unstructured
	namespaces   []*corev1.Namespace
}

// kustomize builds the kustomization in dir as `kubectl apply -k` would, and decodes
// every object strictly (an unknown or misplaced field is an error) into its API type.
func kustomize(t *testing.T, dir string) objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	o := objects{configMaps: map[string]*corev1.ConfigMap{}}
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetGvk()
		what := fmt.Sprintf("%s: %s %s", dir, gvk.Kind, r.GetName())
		var obj any
		switch gvk.ApiVersion() + " " + gvk.Kind {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			o.deployments, obj = append(o.deployments, d), d
		case "v1 Service":
			s := &corev1.Service{}
			o.services, obj = append(o.services, s), s
		case "v1 ConfigMap":
			c := &corev1.ConfigMap{}
			o.configMaps[r.GetName()], obj = c, c // with kustomize's hash suffix, as referred to
		case "v1 Namespace":
			n := &corev1.Namespace{}
			o.namespaces, obj = append(o.namespaces, n), n
		case "autoscaling/v2 HorizontalPodAutoscaler":
			h := &autoscalingv2.HorizontalPodAutoscaler{}
			o.hpas, obj = append(o.hpas, h), h
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			o.pdbs, obj = append(o.pdbs, p), p
		case "monitoring.coreos.com/v1 PodMonitor":
			p := &monitoringv1.PodMonitor{}
			o.podMonitors, obj = append(o.podMonitors, p), p
		case "keda.sh/v1alpha1 ScaledObject":
			// No Go types here: checked as unstructured (checkScaledObject).
			u := &unstructured.Unstructured{}
			j, err := yaml.YAMLToJSON(b)
			if err == nil {
				err = u.UnmarshalJSON(j)
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			o.scaledObject = append(o.scaledObject, u)
			continue
		default:
			t.Errorf("%s: a kind this test does not know: add it to the test, decoded into its API type", what)
			continue
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			t.Errorf("%s does not decode strictly into its API type: %v\n%s", what, err, b)
		}
	}
	return o
}

// configMap returns the ConfigMap kustomize generated as name.
func (o objects) configMap(name string) *corev1.ConfigMap {
	for n, c := range o.configMaps {
		if strings.HasPrefix(n, name+"-") {
			return c
		}
	}
	return nil
}

func (o objects) deployment(name string) *appsv1.Deployment {
	for _, d := range o.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// kustomizations are every kustomization a user may apply: the base, the production
// overlay, and the production overlay with the KEDA component (a kustomization made in
// a temporary directory, as a user's own would be).
func kustomizations(t *testing.T) map[string]objects {
	t.Helper()
	keda := t.TempDir()
	rel := func(p string) string { // kustomize takes no absolute path
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(keda, a)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n",
		rel("kubernetes/overlays/production"), rel("kubernetes/components/keda"))
	if err := os.WriteFile(filepath.Join(keda, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]objects{
		"base":            kustomize(t, "kubernetes/base"),
		"production":      kustomize(t, "kubernetes/overlays/production"),
		"production+keda": kustomize(t, keda),
	}
}

// Every kustomization builds, every object decodes into its API type, and everything
// the containers are told (flags, environment variables, ports, files) is something the
// binaries built from the Dockerfile take. checkObjects says what is checked.
func TestKubernetesManifests(t *testing.T) {
	b := newBinaries(t)
	for name, o := range kustomizations(t) {
		t.Run(name, func(t *testing.T) {
			for _, err := range checkObjects(o, b) {
				t.Error(err)
			}
			if name == "production" && len(o.podMonitors) == 0 {
				t.Error("production: no PodMonitor")
			}
			if name == "production+keda" && len(o.scaledObject) == 0 {
				t.Error("production+keda: no ScaledObject")
			}
		})
	}
}

// The check fails when the binaries change under the manifests: a flag or an
// environment variable renamed, an admin port moved.
func TestKubernetesCheckCatchesDrift(t *testing.T) {
	b := newBinaries(t)
	for _, tc := range []struct {
		name   string
		change func(o objects)
		want   string
	}{
		{"flag renamed", func(o objects) {
			c := &o.deployment("readside-projector").Spec.Template.Spec.Containers[0]
			for i, a := range c.Args {
				c.Args[i] = strings.Replace(a, "-shutdown-grace=", "-shutdown-grace-period=", 1)
			}
		}, `readside-projector: container projector: flag -shutdown-grace-period: projector has no such flag`},
		{"environment variable renamed", func(o objects) {
			c := &o.deployment("readside-queryapi").Spec.Template.Spec.Containers[0]
			c.Env[0].Name = "READSIDE_REDIS_PASS"
		}, `readside-queryapi: container queryapi: environment variable READSIDE_REDIS_PASS: queryapi reads no such variable`},
		{"ConfigMap variable renamed", func(o objects) {
			cm := o.configMap("readside-env")
			cm.Data["READSIDE_ES_URL"] = cm.Data["READSIDE_ES_URLS"]
		}, `environment variable READSIDE_ES_URL (ConfigMap readside-env-`},
		{"admin port moved", func(o objects) {
			c := &o.deployment("readside-queryapi").Spec.Template.Spec.Containers[0]
			for i, a := range c.Args {
				c.Args[i] = strings.Replace(a, "-metrics-addr=:9465", "-metrics-addr=:9466", 1)
			}
		}, `readside-queryapi: container queryapi: livenessProbe port 9465, but the admin address -metrics-addr listens on 9466`},
		{"grace too short", func(o objects) {
			s := int64(15)
			o.deployment("readside-projector").Spec.Template.Spec.TerminationGracePeriodSeconds = &s
		}, `readside-projector: terminationGracePeriodSeconds 15 is not longer than -shutdown-delay 0s + -shutdown-grace 20s + 5s`},
		{"root filesystem writable", func(o objects) {
			f := false
			o.deployment("readside-queryapi").Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		}, `readside-queryapi: container queryapi: readOnlyRootFilesystem is not true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := kustomize(t, "kubernetes/overlays/production")
			tc.change(o)
			var all []string
			for _, err := range checkObjects(o, b) {
				all = append(all, err.Error())
			}
			if !slices.ContainsFunc(all, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("errors %q, want one saying %q", all, tc.want)
			}
		})
	}
}

// binaries are the built commands and what their -h says.
type binaries struct {
	dir    string
	usages map[string]usage
}

func newBinaries(t *testing.T) binaries {
	t.Helper()
	b := binaries{dir: binaryDir(t), usages: map[string]usage{}}
	for _, name := range []string{"projector", "queryapi"} {
		b.usages[name] = usageOf(t, name)
	}
	return b
}

// setting is a flag's value as a container gets it: from its args, else from the
// environment variable the flag reads, else the flag's default.
func setting(c corev1.Container, env map[string]string, u usage, flag, envVar string) string {
	for i, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "-"+flag+"="); ok {
			return v
		}
		if (a == "-"+flag || a == "--"+flag) && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
	}
	if v, ok := env[envVar]; ok {
		return v
	}
	return u.flags[flag].def
}

func portOf(addr string) (int32, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(p)
	return int32(n), err
}

// checkObjects checks one kustomization's output against the binaries:
//   - each container runs a command the image holds, as a non-root user, on a read-only
//     root filesystem, with no capabilities and no privilege escalation;
//   - every flag in its args is one the command has, every environment variable it gets
//     (env, and the READSIDE_ keys of a ConfigMap it takes with envFrom) one it reads;
//   - its probes (/livez, /readyz) are on its admin address's port (-metrics-addr), and
//     the Service sends to its public address's port (-addr); prometheus.io/port and the
//     PodMonitor's port name the admin port;
//   - -definitions is a mounted ConfigMap whose files pass projector -check with the
//     container's environment, and the files the environment names are under mounts;
//   - terminationGracePeriodSeconds is longer than the shutdown the flags ask for;
//   - the projector runs at least 2 replicas under a PodDisruptionBudget, the query API
//     is behind a Service and scaled on CPU; a ScaledObject scales the projector on a
//     live consumer of a projection the definitions hold, on the events stream.
func checkObjects(o objects, b binaries) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	var projections []string
	for _, d := range o.deployments {
		spec := d.Spec.Template.Spec
		ps := spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
			fail("%s: the pod's runAsNonRoot is not true", d.Name)
		}
		if len(spec.Containers) != 1 {
			fail("%s: %d containers, want 1", d.Name, len(spec.Containers))
			continue
		}
		c := spec.Containers[0]
		where := fmt.Sprintf("%s: container %s", d.Name, c.Name)
		if len(c.Command) != 1 {
			fail("%s: command %q, want the path of one of the image's commands", where, c.Command)
			continue
		}
		cmd := filepath.Base(c.Command[0])
		u, ok := b.usages[cmd]
		if !ok || c.Command[0] != "/usr/local/bin/"+cmd {
			fail("%s: command %s is not /usr/local/bin/projector or /usr/local/bin/queryapi", where, c.Command[0])
			continue
		}
		if sc := c.SecurityContext; sc == nil {
			fail("%s: no securityContext", where)
		} else {
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				fail("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				fail("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				fail("%s: capabilities do not drop ALL", where)
			}
		}

		// Flags and environment.
		for i := 0; i < len(c.Args); i++ {
			a := c.Args[i]
			if !strings.HasPrefix(a, "-") {
				continue // the value of the flag before
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if _, ok := u.flags[name]; !ok {
				fail("%s: flag -%s: %s has no such flag", where, name, cmd)
			}
		}
		env := map[string]string{}
		for _, from := range c.EnvFrom {
			if from.ConfigMapRef == nil {
				continue
			}
			cm, ok := o.configMaps[from.ConfigMapRef.Name]
			if !ok {
				fail("%s: envFrom ConfigMap %s: no such ConfigMap", where, from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[k] = v
				if strings.HasPrefix(k, "READSIDE_") && !u.env[k] {
					fail("%s: environment variable %s (ConfigMap %s): %s reads no such variable", where, k, from.ConfigMapRef.Name, cmd)
				}
			}
		}
		for _, e := range c.Env {
			if !u.env[e.Name] {
				fail("%s: environment variable %s: %s reads no such variable", where, e.Name, cmd)
			}
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}

		// Ports and probes.
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		resolve := func(p intstr.IntOrString) int32 {
			if p.Type == intstr.String {
				return ports[p.StrVal]
			}
			return p.IntVal
		}
		admin, err := portOf(setting(c, env, u, "metrics-addr", "READSIDE_METRICS_ADDR"))
		if err != nil {
			fail("%s: -metrics-addr: %v", where, err)
		}
		for _, p := range []struct {
			name, path string
			probe      *corev1.Probe
		}{{"livenessProbe", "/livez", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				fail("%s: no %s over HTTP", where, p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				fail("%s: %s on %s, want %s", where, p.name, p.probe.HTTPGet.Path, p.path)
			}
			if got := resolve(p.probe.HTTPGet.Port); got != admin {
				fail("%s: %s port %d, but the admin address -metrics-addr listens on %d", where, p.name, got, admin)
			}
		}
		if ports["admin"] != admin {
			fail("%s: port admin is %d, but -metrics-addr listens on %d", where, ports["admin"], admin)
		}
		if a := d.Spec.Template.Annotations["prometheus.io/port"]; a != strconv.Itoa(int(admin)) {
			fail("%s: annotation prometheus.io/port %q, want the admin port %d", d.Name, a, admin)
		}
		for _, pm := range o.podMonitors {
			sel := labels.SelectorFromSet(pm.Spec.Selector.MatchLabels)
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				fail("PodMonitor %s does not select %s's pods", pm.Name, d.Name)
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Port == nil || ports[*ep.Port] != admin {
					fail("PodMonitor %s: port %v is not %s's admin port", pm.Name, ep.Port, d.Name)
				}
			}
		}

		// Files: the definitions, and the files the environment names.
		mounts := map[string]string{} // mount path -> volume
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		for path, v := range mounts {
			if _, ok := volumes[v]; !ok {
				fail("%s: mount %s of volume %s: no such volume", where, path, v)
			}
		}
		defs := setting(c, env, u, "definitions", "READSIDE_DEFINITIONS")
		if v, ok := volumes[mounts[defs]]; !ok || v.ConfigMap == nil {
			fail("%s: -definitions %s is not a mounted ConfigMap", where, defs)
		} else if cm, ok := o.configMaps[v.ConfigMap.Name]; !ok {
			fail("%s: volume %s: no ConfigMap %s", where, v.Name, v.ConfigMap.Name)
		} else {
			names, err := checkDefinitions(b, cm, env)
			if err != nil {
				fail("%s: -definitions %s: %v", where, defs, err)
			}
			projections = names
		}
		for _, k := range []string{"READSIDE_NATS_CREDS", "READSIDE_ES_CA_CERT"} {
			if p, ok := env[k]; ok && !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return strings.HasPrefix(p, m.MountPath+"/")
			}) {
				fail("%s: %s %s is under no mount", where, k, p)
			}
		}

		// Shutdown.
		grace := time.Duration(0)
		if spec.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		} else {
			grace = 30 * time.Second
		}
		dur := func(flag, envVar string) time.Duration {
			v := setting(c, env, u, flag, envVar)
			d, err := time.ParseDuration(v)
			if err != nil && v != "" {
				fail("%s: -%s %q: %v", where, flag, v, err)
			}
			return d
		}
		delay := dur("shutdown-delay", "READSIDE_SHUTDOWN_DELAY")
		const margin = 5 * time.Second
		switch cmd {
		case "projector":
			g := dur("shutdown-grace", "READSIDE_SHUTDOWN_GRACE")
			if grace <= delay+g+margin {
				fail("%s: terminationGracePeriodSeconds %d is not longer than -shutdown-delay %s + -shutdown-grace %s + %s (NATS drain)", d.Name, int(grace.Seconds()), delay, g, margin)
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				fail("%s: fewer than 2 replicas", d.Name)
			}
		case "queryapi":
			rt := dur("request-timeout", "READSIDE_REQUEST_TIMEOUT")
			if grace <= delay+rt+margin {
				fail("%s: terminationGracePeriodSeconds %d is not longer than -shutdown-delay %s + -request-timeout %s + %s (drain)", d.Name, int(grace.Seconds()), delay, rt, margin)
			}
			public, err := portOf(setting(c, env, u, "addr", "READSIDE_QUERY_ADDR"))
			if err != nil {
				fail("%s: -addr: %v", where, err)
			}
			served := false
			for _, s := range o.services {
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					continue
				}
				served = true
				for _, p := range s.Spec.Ports {
					if got := resolve(p.TargetPort); got != public {
						fail("Service %s: port %s sends to %d, but -addr listens on %d", s.Name, p.Name, got, public)
					}
				}
			}
			if !served {
				fail("%s: no Service selects its pods", d.Name)
			}
			if !slices.ContainsFunc(o.hpas, func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
				return h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name &&
					slices.ContainsFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
						return m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
					})
			}) {
				fail("%s: no HorizontalPodAutoscaler on CPU", d.Name)
			}
		}
		if !slices.ContainsFunc(o.pdbs, func(p *policyv1.PodDisruptionBudget) bool {
			return p.Spec.Selector != nil && labels.SelectorFromSet(p.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels))
		}) {
			fail("%s: no PodDisruptionBudget", d.Name)
		}
	}
	for _, name := range []string{"readside-projector", "readside-queryapi"} {
		if o.deployment(name) == nil {
			fail("no Deployment %s", name)
		}
	}
	for _, so := range o.scaledObject {
		errs = append(errs, checkScaledObject(o, so, b, projections)...)
	}
	return errs
}

// kedaJetStream are the nats-jetstream scaler's metadata fields (keda.sh/docs/scalers/nats-jetstream),
// the required ones true.
var kedaJetStream = map[string]bool{
	"natsServerMonitoringEndpoint": true, "account": true, "stream": true, "consumer": true, "lagThreshold": true,
	"activationLagThreshold": false, "useHttps": false,
}

func checkScaledObject(o objects, so *unstructured.Unstructured, b binaries, projections []string) []error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("ScaledObject %s: "+format, append([]any{so.GetName()}, a...)...))
	}
	target, _, _ := unstructured.NestedString(so.Object, "spec", "scaleTargetRef", "name")
	d := o.deployment(target)
	if d == nil || d.Spec.Template.Spec.Containers[0].Command[0] != "/usr/local/bin/projector" {
		fail("scaleTargetRef %q is not the projector's Deployment", target)
	}
	if min, ok, _ := unstructured.NestedInt64(so.Object, "spec", "minReplicaCount"); !ok || min < 2 {
		fail("minReplicaCount %d, want at least 2", min)
	}
	if max, _, _ := unstructured.NestedInt64(so.Object, "spec", "maxReplicaCount"); max < 2 {
		fail("maxReplicaCount %d, want at least 2", max)
	}
	triggers, _, err := unstructured.NestedSlice(so.Object, "spec", "triggers")
	if err != nil || len(triggers) == 0 {
		fail("no triggers")
	}
	stream := b.usages["projector"].flags["stream"].def
	for _, tr := range triggers {
		m, _ := tr.(map[string]any)
		if m["type"] != "nats-jetstream" {
			fail("trigger type %v, want nats-jetstream", m["type"])
			continue
		}
		md, _ := m["metadata"].(map[string]any)
		for k, required := range kedaJetStream {
			if _, ok := md[k]; required && !ok {
				fail("nats-jetstream trigger lacks %s", k)
			}
		}
		for k, v := range md {
			if _, ok := kedaJetStream[k]; !ok {
				fail("nats-jetstream trigger: unknown metadata %s", k)
			}
			if _, ok := v.(string); !ok {
				fail("nats-jetstream trigger: metadata %s is %T, want a string", k, v)
			}
		}
		if md["stream"] != stream {
			fail("stream %v, want the projector's events stream %s", md["stream"], stream)
		}
		c, _ := md["consumer"].(string)
		if p, ok := strings.CutPrefix(c, "readside_"); !ok || !slices.Contains(projections, p) {
			fail("consumer %q is not the live consumer readside_<projection> of a projection in the definitions %v", c, projections)
		}
		if n, err := strconv.Atoi(fmt.Sprint(md["lagThreshold"])); err != nil || n < 1 {
			fail("lagThreshold %v is not a positive integer", md["lagThreshold"])
		}
	}
	return errs
}

// checkDefinitions writes the ConfigMap's files to a directory and runs projector
// -check on it with env, as the container would; it returns the projections' names.
// A source URL naming a variable env lacks is an error: the daemons would not start.
func checkDefinitions(b binaries, cm *corev1.ConfigMap, env map[string]string) ([]string, error) {
	dir, err := os.MkdirTemp("", "readside-deploy-defs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(filepath.Join(b.dir, "projector"), "-check", "-definitions", dir)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("projector -check: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "not set here") {
		return nil, errors.New(strings.TrimSpace(string(out)))
	}
	// "definitions OK: DIR: N projections: name (subjects); name (...)"
	_, list, _ := strings.Cut(strings.TrimPrefix(string(out), "definitions OK: "+dir+": "), ": ")
	var names []string
	for p := range strings.SplitSeq(list, "; ") {
		if n, _, ok := strings.Cut(p, " ("); ok {
			names = append(names, n)
		}
	}
	return names, nil
}
