// Package strictyaml is the project's one strict YAML decoder: weft.yaml
// (config.Parse) and the controller's inventory read their documents
// through it. An unknown key, a repeated key, a merge key, a value of the
// wrong type or out of range is a FieldError naming the value's path
// ("bgp.controllers[1].asn") and line, and an unknown key's error names the
// key meant (SuggestKey). Decoding goes on past an error, so that one run
// shows every error of a document.
package strictyaml
