package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

const manifest = "../../deploy/kubernetes/weft.yaml"

// readManifest decodes every document of deploy/kubernetes/weft.yaml
// strictly with the API's own types: an unknown or duplicated field, a
// wrong type or an unknown kind fails.
func readManifest(t *testing.T) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", manifest, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d: %v", manifest, i, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestManifest: the DaemonSet runs the vRouter and the agent on the host
// network with the capabilities and host paths they need, the agent with
// the node's kubeconfig, and the RBAC gives nodes the namespaces' labels.
func TestManifest(t *testing.T) {
	var ds *appsv1.DaemonSet
	var role *rbacv1.ClusterRole
	var binding *rbacv1.ClusterRoleBinding
	for _, o := range readManifest(t) {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *rbacv1.ClusterRole:
			role = o
		case *rbacv1.ClusterRoleBinding:
			binding = o
		}
	}
	if ds == nil || role == nil || binding == nil {
		t.Fatalf("%s: want a DaemonSet, a ClusterRole and its binding", manifest)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("the DaemonSet is not on the host network")
	}
	paths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			paths[v.Name] = v.HostPath.Path
		}
	}
	for _, p := range []string{"/var/run/netns", "/opt/cni/bin", "/etc/cni/net.d", "/var/lib/weft", "/run/weft", "/etc/kubernetes"} {
		found := false
		for _, hp := range paths {
			found = found || hp == p
		}
		if !found {
			t.Errorf("no hostPath volume for %s", p)
		}
	}
	caps := map[string]map[corev1.Capability]bool{}
	for _, c := range spec.Containers {
		caps[c.Name] = map[corev1.Capability]bool{}
		if c.SecurityContext != nil && c.SecurityContext.Capabilities != nil {
			for _, c2 := range c.SecurityContext.Capabilities.Add {
				caps[c.Name][c2] = true
			}
		}
	}
	for _, want := range []corev1.Capability{"NET_ADMIN", "SYS_ADMIN", "BPF"} {
		if !caps["vrouter"][want] {
			t.Errorf("the vrouter container lacks %s", want)
		}
	}
	for _, want := range []corev1.Capability{"NET_ADMIN", "SYS_ADMIN"} {
		if !caps["agent"][want] {
			t.Errorf("the agent container lacks %s", want)
		}
	}
	if len(spec.InitContainers) == 0 || !strings.Contains(strings.Join(spec.InitContainers[0].Command, " "), "cni install") {
		t.Error("no init container runs weft cni install")
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != "system:nodes" {
		t.Errorf("the ClusterRoleBinding %+v does not give %s to system:nodes", binding, role.Name)
	}
}
