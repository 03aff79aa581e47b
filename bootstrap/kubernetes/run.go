package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
)

// retryEvery paces the retries of a failed credential or watch start.
const retryEvery = 5 * time.Second

// Attachments is the part of the agent's local API the join uses
// (agentapi.Client implements it).
type Attachments interface {
	Attachments() ([]agentapi.Attachment, error)
	Detach(agentapi.AttachmentKey) error
}

// Run joins the cluster until ctx ends: the credential, then the watch
// w (which the agent asks at each ADD), then the removal of the
// attachments of pods that vanished while the agent was down. Failures
// are logged and retried.
func Run(ctx context.Context, j *config.KubernetesJoin, node, stateDir string, w *Watch, agent Attachments, log *slog.Logger) {
	// The attachments that exist before the watch lists the pods: any of
	// them whose pod the synced watch lacks is gone. (One made later may
	// be for a pod the watch has not seen yet.)
	var before []agentapi.Attachment
	retry(ctx, log, "agent API", func() (err error) {
		before, err = agent.Attachments()
		return err
	})
	var client *kubernetes.Clientset
	retry(ctx, log, "credential", func() error {
		start := time.Now()
		cfg, err := Credential(ctx, j, node, stateDir, log)
		if err != nil {
			return err
		}
		cfg.UserAgent = "weft-agent"
		if client, err = kubernetes.NewForConfig(cfg); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		log.Info("kubernetes credential", "node", node, "server", cfg.Host, "took", time.Since(start).Round(time.Millisecond))
		return nil
	})
	if ctx.Err() != nil {
		return
	}
	start := time.Now()
	if err := w.Start(ctx, client); err != nil {
		if ctx.Err() == nil {
			log.Error("kubernetes watch", "err", err)
		}
		return
	}
	log.Info("kubernetes watch synced", "node", node, "took", time.Since(start).Round(time.Millisecond))
	prune(w, before, agent, log)
}

func retry(ctx context.Context, log *slog.Logger, what string, f func() error) {
	for ctx.Err() == nil {
		err := f()
		if err == nil {
			return
		}
		log.Warn("kubernetes join: retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(retryEvery):
		}
	}
}

// prune detaches the attachments in before whose pod the synced watch
// does not hold: pods deleted while the agent was down.
func prune(w *Watch, before []agentapi.Attachment, agent Attachments, log *slog.Logger) {
	for _, a := range before {
		if a.PodName == "" || w.has(a.PodNamespace, a.PodName) {
			continue
		}
		k := agentapi.AttachmentKey{ContainerID: a.ContainerID, IfName: a.IfName}
		if err := agent.Detach(k); err != nil {
			log.Warn("kubernetes: detaching a vanished pod", "pod", a.PodNamespace+"/"+a.PodName, "endpoint", a.Endpoint, "err", err)
			continue
		}
		log.Info("kubernetes: detached a pod that vanished", "pod", a.PodNamespace+"/"+a.PodName, "endpoint", a.Endpoint)
	}
}
