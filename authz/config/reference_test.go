package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// referenceDoc is the configuration reference for operators.
const referenceDoc = "../../docs/configuration.md"

// configKey is one key of the configuration file, as an operator writes it
// (apps[].mlflow.default_permission), with the Go field it decodes into.
type configKey struct {
	key, field string
}

// configKeys walks the yaml tags of t as go.yaml.in/yaml/v3 decodes them.
// Slices of structs become key[], maps are leaves (their keys are the
// user's), a struct's keys are listed below its key, and ",inline" structs
// add their keys to the parent's.
func configKeys(t reflect.Type, prefix string) []configKey {
	var out []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			out = append(out, configKeys(ft, prefix)...)
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		key := prefix + tag
		field := t.String() + "." + f.Name
		switch {
		case ft.Kind() == reflect.Struct && ft.String() != "time.Duration":
			out = append(out, configKeys(ft, key+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, configKeys(ft.Elem(), key+"[].")...)
		default:
			out = append(out, configKey{key, field})
		}
	}
	return out
}

// documentedKey is a reference row: "| `server.grpc_addr` | ...".
var documentedKey = regexp.MustCompile("(?m)^\\|\\s*`([a-z_\\[\\].]+)`\\s*\\|")

// TestConfigurationReferenceIsComplete holds docs/configuration.md to the
// structs the file is decoded into: every key has a row, and every row is
// a key.
func TestConfigurationReferenceIsComplete(t *testing.T) {
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range documentedKey.FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = true
	}
	keys := configKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 50 {
		t.Fatalf("found only %d keys in Config: is the walk broken?", len(keys))
	}
	inCode := map[string]bool{}
	for _, k := range keys {
		inCode[k.key] = true
		if !documented[k.key] {
			section, _, _ := strings.Cut(k.key, ".")
			t.Errorf("%s has no row for key %s (Go field %s).\nAdd this line to the table of the %q section, with its default and what it does:\n| `%s` | default | meaning |",
				referenceDoc, k.key, k.field, strings.TrimSuffix(section, "[]"), k.key)
		}
	}
	var stale []string
	for k := range documented {
		if !inCode[k] {
			stale = append(stale, k)
		}
	}
	slices.Sort(stale)
	for _, k := range stale {
		t.Errorf("%s documents key %s, which no field of config.Config decodes (renamed or removed?): fix or delete its row", referenceDoc, k)
	}
}
