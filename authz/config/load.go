// Package config reads mlflow-authz's YAML configuration: one file, strict
// (unknown keys are errors), with ${ENV} references for URLs and secrets, and
// validated whole before anything uses it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the configuration file; a larger file is a mistake.
const MaxFileSize = 1 << 20

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ExpandEnv replaces ${NAME} with the environment variable NAME and "$$" with
// "$". A reference to an unset variable is an error naming it, so a missing
// secret never silently becomes an empty string.
func ExpandEnv(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		if string(m) == "$$" {
			return []byte("$")
		}
		name := string(m[2 : len(m)-1])
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
			return nil
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("config: environment variable %s is referenced but not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// Parse decodes and validates a configuration document. Environment
// references are expanded with lookup first (os.LookupEnv in production).
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: file is larger than %d bytes", MaxFileSize)
	}
	data, err := ExpandEnv(data, lookup)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %w", cleanYAMLError(err))
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("config: the file holds more than one YAML document")
	}
	cfg.applyEnv(lookup)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Load reads, expands and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, os.LookupEnv)
}

// cleanYAMLError keeps yaml's "line N: field x not found in type config.T"
// readable for operators, who know keys, not Go types.
func cleanYAMLError(err error) error {
	return errors.New(unknownField.ReplaceAllString(err.Error(), "unknown key $1"))
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
