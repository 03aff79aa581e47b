package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// podWait bounds how long PodNetwork waits for a pod the watch has not
// seen yet (the kubelet's ADD can come before the watch's event), before
// it asks the API server directly.
const podWait = 5 * time.Second

// Watch is the node's view of its pods and of the namespaces' labels. It
// answers PodNetwork once its informers have synced.
type Watch struct {
	node, defaultNetwork string
	log                  *slog.Logger

	synced chan struct{} // closed once both informers have synced
	client kubernetes.Interface
	pods   listersv1.PodLister
	nss    listersv1.NamespaceLister

	mu      sync.Mutex
	lastErr error // the informers' last list/watch failure, for ADD's error
}

// NewWatch returns a watch for node's pods; Start runs it.
func NewWatch(node, defaultNetwork string, log *slog.Logger) *Watch {
	return &Watch{node: node, defaultNetwork: defaultNetwork, log: log, synced: make(chan struct{})}
}

// Start runs the informers with client (the node's credential) until
// ctx ends, and waits for their first sync. Pods are listed with the
// field selector spec.nodeName=<node>: the only list the Node authorizer
// allows a node.
func (w *Watch) Start(ctx context.Context, client kubernetes.Interface) error {
	w.client = client
	pf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", w.node).String()
	}))
	nf := informers.NewSharedInformerFactory(client, 0)
	pi, ni := pf.Core().V1().Pods(), nf.Core().V1().Namespaces()
	for what, inf := range map[string]cache.SharedIndexInformer{"pods": pi.Informer(), "namespaces": ni.Informer()} {
		err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			w.mu.Lock()
			w.lastErr = fmt.Errorf("%s: %w", what, err)
			w.mu.Unlock()
			w.log.Warn("kubernetes watch", "what", what, "err", err)
		})
		if err != nil {
			return fmt.Errorf("kubernetes watch: %w", err)
		}
	}
	w.pods, w.nss = pi.Lister(), ni.Lister()
	pf.Start(ctx.Done())
	nf.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pi.Informer().HasSynced, ni.Informer().HasSynced) {
		return fmt.Errorf("kubernetes watch: not synced: %w", errors.Join(ctx.Err(), w.err()))
	}
	close(w.synced)
	return nil
}

func (w *Watch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// PodNetwork names the Weft network of the pod namespace/name on this
// node: its annotation, else its namespace's label, else the default
// network; "" when none names one (the CNI request's network applies).
// It waits for the watch's first sync, bounded by ctx.
func (w *Watch) PodNetwork(ctx context.Context, namespace, name string) (string, error) {
	select {
	case <-w.synced:
	case <-ctx.Done():
		return "", fmt.Errorf("pod %s/%s: the Kubernetes watch has not synced (%v): %w", namespace, name, w.err(), ctx.Err())
	}
	pod, err := w.pod(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	if nw := pod.Annotations[AnnotationNetwork]; nw != "" {
		w.log.Debug("pod network", "pod", namespace+"/"+name, "network", nw, "from", "annotation")
		return nw, nil
	}
	ns, err := w.nss.Get(namespace)
	switch {
	case err == nil:
		if nw := ns.Labels[LabelNetwork]; nw != "" {
			w.log.Debug("pod network", "pod", namespace+"/"+name, "network", nw, "from", "namespace label")
			return nw, nil
		}
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("namespace %s: %w", namespace, err)
	}
	return w.defaultNetwork, nil
}

// pod is namespace/name from the watch's cache, waiting up to podWait
// for the watch to see it, then from the API server.
func (w *Watch) pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	deadline := time.Now().Add(podWait)
	for {
		pod, err := w.pods.Pods(namespace).Get(name)
		if err == nil {
			return pod, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	pod, err := w.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s on node %s: %w", namespace, name, w.node, err)
	}
	return pod, nil
}

// has reports whether the synced cache holds the pod namespace/name.
func (w *Watch) has(namespace, name string) bool {
	_, err := w.pods.Pods(namespace).Get(name)
	return err == nil
}
