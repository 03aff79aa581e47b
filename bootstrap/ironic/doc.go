// Package ironic is Weft's side of Ironic's agent contract, what
// ironic-python-agent (IPA) does for the conductor when a node boots with
// ipa-api-url= on its kernel command line:
//
//   - lookup: GET /v1/lookup?addresses=<the node's MACs> until Ironic
//     answers with the node (it does only while the node waits for an agent:
//     deploy wait, clean wait, rescue wait …), with backoff; the agent token
//     of that answer is kept (Ironic hands it out once);
//   - heartbeat: POST /v1/heartbeat/<node> with the callback URL, the agent
//     version and the token, three times per heartbeat_timeout the lookup
//     returned;
//   - the agent API (IPA's REST API v1) on port 9999 of the underlay address
//     (the one the node reaches Ironic from), which the conductor calls back:
//     GET /v1/status, GET /v1/commands/, POST /v1/commands/. Weft answers
//     honestly: it offers no clean or deploy steps, flushes on standby.sync,
//     and carries out standby.power_off and standby.run_image (reboot)
//     through the Power function PID 1 gives it.
//
// Who may command the node: whoever holds the agent token, which only the
// conductor has (Ironic hands it to the first lookup and keeps it in the
// node's driver_internal_info). Every POST /v1/commands/ must carry it
// (?agent_token=, as IPA requires since Ironic made it mandatory); the
// listener is bound to the underlay address only.
package ironic
