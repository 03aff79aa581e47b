package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/config"
)

func init() {
	register("config", "check a weft.yaml, network_data.json or meta_data.json (config check FILE)", runConfig)
}

func runConfig(args []string) error {
	if len(args) == 0 || args[0] != "check" {
		return groupUsage("config", args, map[string]string{"check": "validate a weft.yaml, network_data.json or meta_data.json (FILE - reads standard input)"})
	}
	return configCheck(args[1:], os.Stdout, os.Stderr)
}

// configCheck validates one file. It prints "ok: <summary>" to stdout, or
// every error (each naming its path) to stderr and returns an error.
func configCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("config check", "config check [--kind weft|network_data|meta_data] FILE  (FILE - reads standard input)")
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "what FILE is: weft, network_data or meta_data (default: from the file name)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want one FILE")
	}
	name := fs.Arg(0)
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	k := *kind
	if k == "" {
		k = kindFromName(name)
	}
	var summary string
	var errs []error
	switch k {
	case "weft":
		summary, errs = checkWeft(data)
	case "network_data":
		summary, errs = checkNetworkData(data)
	case "meta_data":
		summary, errs = checkMetaData(data)
	default:
		return fmt.Errorf("--kind %q: want weft, network_data or meta_data", k)
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(stderr, "%s: %v\n", name, e)
		}
		if len(errs) == 1 {
			return fmt.Errorf("%s: 1 error", name)
		}
		return fmt.Errorf("%s: %d errors", name, len(errs))
	}
	fmt.Fprintf(stdout, "ok: %s: %s\n", name, summary)
	return nil
}

func kindFromName(name string) string {
	base := strings.ToLower(filepath.Base(name))
	switch {
	case strings.Contains(base, "network_data"):
		return "network_data"
	case strings.Contains(base, "meta_data"):
		return "meta_data"
	}
	return "weft"
}

// flatten lists the errors errors.Join put together, one per path.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func checkWeft(data []byte) (string, []error) {
	d, err := config.DecodeUserData(data)
	if err != nil {
		return "", []error{err}
	}
	switch k := config.ClassifyUserData(d); k {
	case config.UserDataCloudConfig:
		return "", []error{errors.New("this is cloud-init user data (#cloud-config), not weft.yaml")}
	case config.UserDataScript:
		return "", []error{errors.New("this is a script (#!), not weft.yaml")}
	}
	c, err := config.Parse(d)
	if err != nil {
		return "", flatten(err)
	}
	return "weft.yaml: " + c.Summary(), nil
}

func checkNetworkData(data []byte) (string, []error) {
	nd, err := config.ParseNetworkData(data)
	if err != nil {
		return "", []error{err}
	}
	u, probs := nd.Underlay()
	if len(probs) > 0 {
		errs := make([]error, len(probs))
		for i, p := range probs {
			errs[i] = p
		}
		return "", errs
	}
	return fmt.Sprintf("network_data.json: %s; %d usable links", nd.Summary(), len(u.Links)), nil
}

func checkMetaData(data []byte) (string, []error) {
	md, err := config.ParseMetaData(data)
	if err != nil {
		return "", []error{err}
	}
	return "meta_data.json: " + md.Summary(), nil
}
