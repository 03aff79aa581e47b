package config

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// OpenStackJoin is join.openstack: how the node authenticates to Keystone
// and which Weft network each Neutron network is (bootstrap/openstack).
type OpenStackJoin struct {
	AuthURL string `yaml:"authURL"` // Keystone v3, e.g. https://keystone:5000/v3
	Region  string `yaml:"region"`  // the catalog region; "" = the first endpoint of each service
	// CACert is the PEM bundle Keystone's and the services' TLS
	// certificates are checked against; "" = the system's roots.
	CACert string `yaml:"caCert"`
	// Exactly one of these three authenticates the node.
	ApplicationCredential ApplicationCredential `yaml:"applicationCredential"`
	Password              *OpenStackPassword    `yaml:"password"`
	// VendorData2: the credential is the node's own, in
	// vendor_data2.json (see VendorData2).
	VendorData2 bool `yaml:"vendorData2"`
	// Networks maps Neutron networks (by name or ID) to Weft networks of
	// the networks section, whose VNI and route targets they take.
	Networks []NeutronNetwork `yaml:"networks"`
	// MatchVNI: a Neutron network that Networks does not list is the
	// Weft network whose vni equals its provider:segmentation_id.
	MatchVNI bool `yaml:"matchVNI"`
	// ComputeHost: this node is a Nova compute host of that name (Nova's
	// [DEFAULT] host, the ports' binding:host_id); the ports bound to it
	// as taps become AF_PACKET endpoints on the VMs' taps. "" = the node
	// is an instance, whose own ports it attaches.
	ComputeHost string `yaml:"computeHost"`
}

// ApplicationCredential is a Keystone application credential.
type ApplicationCredential struct {
	ID     string `yaml:"id"`
	Secret string `yaml:"secret"`
}

// OpenStackPassword is a Keystone user's password, scoped to a project.
type OpenStackPassword struct {
	Username      string `yaml:"username"`
	Password      string `yaml:"password"`
	UserDomain    string `yaml:"userDomain"` // "" = Default
	Project       string `yaml:"project"`
	ProjectDomain string `yaml:"projectDomain"` // "" = Default
}

// NeutronNetwork is one entry of join.openstack.networks.
type NeutronNetwork struct {
	Neutron string `yaml:"neutron"` // the Neutron network's name or ID
	Network string `yaml:"network"` // the Weft network it is
}

func (v *validator) openstack(c *Config, o *OpenStackJoin) {
	const p = "join.openstack"
	v.url(p+".authURL", o.AuthURL, false)
	ac := o.ApplicationCredential
	switch {
	case o.VendorData2 && (ac != (ApplicationCredential{}) || o.Password != nil):
		v.fail(p+".vendorData2", "the credential comes from vendor_data2.json: give no applicationCredential or password")
	case o.VendorData2:
	case ac != (ApplicationCredential{}) && o.Password != nil:
		v.fail(p+".password", "give applicationCredential or password, not both")
	case ac == (ApplicationCredential{}) && o.Password == nil:
		v.fail(p+".applicationCredential.id", "required: an application credential (id, secret), a password, or vendorData2")
	case o.Password == nil:
		if ac.ID == "" {
			v.fail(p+".applicationCredential.id", "required")
		}
		if ac.Secret == "" {
			v.fail(p+".applicationCredential.secret", "required")
		}
	default:
		for _, f := range []struct{ name, val string }{
			{"username", o.Password.Username}, {"password", o.Password.Password}, {"project", o.Password.Project},
		} {
			if f.val == "" {
				v.fail(p+".password."+f.name, "required")
			}
		}
	}
	if o.CACert != "" {
		if blk, _ := pem.Decode([]byte(o.CACert)); blk == nil {
			v.fail(p+".caCert", "not PEM: want one or more -----BEGIN CERTIFICATE----- blocks")
		} else if !x509.NewCertPool().AppendCertsFromPEM([]byte(o.CACert)) {
			v.fail(p+".caCert", "no certificate in the PEM")
		}
	}
	seen := map[string]int{}
	for i, n := range o.Networks {
		np := idx(p+".networks", i)
		switch {
		case n.Neutron == "":
			v.fail(np+".neutron", "required: a Neutron network's name or ID")
		case seen[n.Neutron] > 0:
			v.fail(np+".neutron", "%q is mapped already by %s", n.Neutron, idx(p+".networks", seen[n.Neutron]-1))
		}
		seen[n.Neutron] = i + 1
		switch {
		case n.Network == "":
			v.fail(np+".network", "required: a network of the networks section")
		case c.Network(n.Network) == nil:
			v.fail(np+".network", "no network is called %q", n.Network)
		}
	}
	switch h := o.ComputeHost; {
	case h != "" && o.VendorData2:
		v.fail(p+".computeHost", "a compute host is no instance and has no vendor_data2.json: give its credential here")
	case len(h) > 255 || strings.ContainsAny(h, " \t\n/"):
		v.fail(p+".computeHost", "%q is not a host name (Nova's [DEFAULT] host)", h)
	}
	if len(o.Networks) == 0 && !o.MatchVNI {
		v.fail(p+".networks", "required: map Neutron networks to Weft networks, or set matchVNI")
	}
}

// VendorData2 is what Weft reads of Nova's vendor_data2.json: the answer
// of the dynamic vendordata target named "weft", which carries this
// node's own credential, so that user_data (the fleet's weft.yaml) holds
// none:
//
//	{"weft": {"openstack": {"applicationCredential": {"id": "…", "secret": "…"}}}}
//
// ("password": {…} as in weft.yaml instead of applicationCredential).
type VendorData2 struct {
	ApplicationCredential ApplicationCredential
	Password              *OpenStackPassword
}

// ParseVendorData2 reads vendor_data2.json's "weft" target.
func ParseVendorData2(b []byte) (*VendorData2, error) {
	var doc struct {
		Weft *struct {
			OpenStack *struct {
				ApplicationCredential *struct {
					ID     string `json:"id"`
					Secret string `json:"secret"`
				} `json:"applicationCredential"`
				Password *struct {
					Username      string `json:"username"`
					Password      string `json:"password"`
					UserDomain    string `json:"userDomain"`
					Project       string `json:"project"`
					ProjectDomain string `json:"projectDomain"`
				} `json:"password"`
			} `json:"openstack"`
		} `json:"weft"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("vendor_data2.json: %w", describeJSONError(b, err))
	}
	if doc.Weft == nil || doc.Weft.OpenStack == nil {
		return nil, errors.New(`vendor_data2.json: no "weft": {"openstack": …} (the dynamic vendordata target named weft)`)
	}
	o := doc.Weft.OpenStack
	v := &VendorData2{}
	switch {
	case o.ApplicationCredential != nil && o.ApplicationCredential.ID != "" && o.ApplicationCredential.Secret != "":
		v.ApplicationCredential = ApplicationCredential{ID: o.ApplicationCredential.ID, Secret: o.ApplicationCredential.Secret}
	case o.Password != nil && o.Password.Username != "" && o.Password.Password != "" && o.Password.Project != "":
		v.Password = &OpenStackPassword{Username: o.Password.Username, Password: o.Password.Password, UserDomain: o.Password.UserDomain,
			Project: o.Password.Project, ProjectDomain: o.Password.ProjectDomain}
	default:
		return nil, errors.New("vendor_data2.json: weft.openstack: want applicationCredential {id, secret} or password {username, password, project}")
	}
	return v, nil
}

// WithVendorData2 is o with v's credential.
func (o OpenStackJoin) WithVendorData2(v *VendorData2) *OpenStackJoin {
	o.ApplicationCredential, o.Password, o.VendorData2 = v.ApplicationCredential, v.Password, false
	return &o
}
