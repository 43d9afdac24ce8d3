// Package yamlstrict decodes configuration files strictly: unknown fields, duplicate fields
// and fields whose case differs from the Go struct's json tag are all errors. (sigs.k8s.io/yaml
// alone matches field names case-insensitively, so a "servername" typo would pass silently.)
package yamlstrict

import (
	"errors"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Unmarshal decodes YAML (or JSON) into v strictly.
func Unmarshal(data []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}
