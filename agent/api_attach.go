package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
)

// attachWait bounds one attach, detach or GC request: the vRouter's part
// is bounded by portWait per attachment.
const attachWait = 2 * time.Minute

// serveAttachments adds CNI's paths to the local API.
func (s *apiServer) serveAttachments(mux *http.ServeMux) {
	key := func(r *http.Request) agentapi.AttachmentKey {
		return agentapi.AttachmentKey{ContainerID: r.PathValue("container"), IfName: r.PathValue("ifname")}
	}
	one := agentapi.PathAttachments + "/{container}/{ifname}"
	mux.HandleFunc("POST "+agentapi.PathAttachments, handle(func(r *http.Request) (any, error) {
		var req agentapi.AttachRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		ctx, cancel := context.WithTimeout(r.Context(), attachWait)
		defer cancel()
		return s.ctl.Attach(ctx, req)
	}))
	mux.HandleFunc("GET "+agentapi.PathAttachments, handle(func(r *http.Request) (any, error) { return s.ctl.Attachments(), nil }))
	mux.HandleFunc("GET "+one, handle(func(r *http.Request) (any, error) { return s.ctl.Attachment(key(r)) }))
	mux.HandleFunc("DELETE "+one, handle(func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), attachWait)
		defer cancel()
		if err := s.ctl.Detach(ctx, key(r)); err != nil {
			return nil, err
		}
		return key(r), nil
	}))
	mux.HandleFunc("POST "+agentapi.PathAttachmentsGC, handle(func(r *http.Request) (any, error) {
		var req agentapi.GCRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		ctx, cancel := context.WithTimeout(r.Context(), attachWait)
		defer cancel()
		return s.ctl.GC(ctx, req.Valid)
	}))
}
