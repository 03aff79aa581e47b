package ironic

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The agent API's answers to what the conductor may send, without Ironic.
func TestAgentAPIAnswers(t *testing.T) {
	release := make(chan struct{})
	powered := make(chan bool, 1)
	a := &api{token: func() string { return "tok" }, version: "v", started: time.Now(), sync: func() error { return nil },
		power: func(reboot bool) error { powered <- reboot; <-release; return nil }, log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(a)
	defer srv.Close()
	post := func(name string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/v1/commands/?wait=true&agent_token=tok", "application/json", strings.NewReader(`{"name":"`+name+`","params":{"node":{}}}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}
	code, doc := post("deploy.get_deploy_steps")
	res, _ := doc["command_result"].(map[string]any)
	if code != 200 || doc["command_status"] != "SUCCEEDED" || doc["command_name"] != "get_deploy_steps" || res["deploy_steps"] == nil || res["hardware_manager_version"] == nil {
		t.Errorf("get_deploy_steps: HTTP %d %v", code, doc)
	}
	for _, name := range []string{"deploy.execute_deploy_step", "image.install_bootloader", "nonsense"} {
		if code, doc := post(name); code != 400 || !strings.Contains(doc["faultstring"].(string), "Unknown command: "+name) {
			t.Errorf("%s: HTTP %d %v, want 400 naming it", name, code, doc)
		}
	}
	if code, doc := post("standby.power_off"); code != 200 || doc["command_status"] != "RUNNING" {
		t.Errorf("power_off: HTTP %d %v, want RUNNING", code, doc)
	}
	if reboot := <-powered; reboot {
		t.Error("power_off rebooted")
	}
	// While it runs, the agent is busy, as IPA says (409).
	if code, doc := post("standby.sync"); code != 409 || !strings.Contains(doc["faultstring"].(string), "busy") {
		t.Errorf("sync during power_off: HTTP %d %v, want 409 busy", code, doc)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/v1/commands/")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Commands []result `json:"commands"`
		}
		json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		last := list.Commands[len(list.Commands)-1]
		if last.Name == "power_off" && last.Status == statusSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("power_off never SUCCEEDED in the command list: %+v", list.Commands)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
