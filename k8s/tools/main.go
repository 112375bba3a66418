// Command k8stool: the two offline helpers of scripts/k8s-check.
//
//	k8stool schemas SWAGGER_JSON OUT_DIR K8S_VERSION
//	    Converts the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json of the
//	    k8s.io/kubernetes Go module) into the JSON schemas kubeconform reads, laid out as
//	    OUT_DIR/vK8S_VERSION-standalone-strict/<kind>-<group>-<version>.json: one file per
//	    kind, every referenced definition embedded under "definitions" (standalone),
//	    "additionalProperties": false on every object that lists its properties (strict),
//	    int-or-string as string|integer and Quantity as string|number (what the API server
//	    accepts). This is what kubeconform's own schema repository holds, generated here
//	    because that repository cannot be downloaded on this machine.
//
//	k8stool yaml2json < MULTI_DOC.yaml > ARRAY.json
//	    Every YAML document of stdin as one JSON array (null documents dropped), so that
//	    the Rust tests can read kustomize's output with serde_json.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "schemas":
		if len(os.Args) != 5 {
			usage()
		}
		var n int
		n, err = schemas(os.Args[2], os.Args[3], os.Args[4])
		if err == nil {
			fmt.Fprintf(os.Stderr, "k8stool: %d schemas in %s\n", n, schemaDir(os.Args[3], os.Args[4]))
		}
	case "yaml2json":
		err = yaml2json(os.Stdin, os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8stool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: k8stool schemas SWAGGER_JSON OUT_DIR K8S_VERSION | k8stool yaml2json")
	os.Exit(2)
}

type object = map[string]any

func schemaDir(out, version string) string {
	return filepath.Join(out, "v"+strings.TrimPrefix(version, "v")+"-standalone-strict")
}

const refPrefix = "#/definitions/"

func schemas(swaggerPath, out, version string) (int, error) {
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Definitions map[string]object `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", swaggerPath, err)
	}
	if len(doc.Definitions) == 0 {
		return 0, errors.New(swaggerPath + ": no definitions")
	}
	for name, def := range doc.Definitions {
		doc.Definitions[name] = normalize(name, def)
	}
	dir := schemaDir(out, version)
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return 0, err
	}
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	written := map[string]string{}
	for _, name := range names {
		def := doc.Definitions[name]
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(object)
			group, _ := gvk["group"].(string)
			ver, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			if kind == "" || ver == "" {
				continue
			}
			// kubeconform's file name: <kind>-<first label of the group>-<version>, or
			// <kind>-<version> for the core group.
			file := strings.ToLower(kind)
			if group != "" {
				file += "-" + strings.ToLower(strings.Split(group, ".")[0])
			}
			file += "-" + strings.ToLower(ver) + ".json"
			if prev, ok := written[file]; ok {
				// Several definitions list the same kind (e.g. meta DeleteOptions); keep the
				// one whose name ends with the kind, as kubernetes-json-schema does.
				if strings.HasSuffix(prev, "."+kind) || !strings.HasSuffix(name, "."+kind) {
					continue
				}
			}
			schema := standalone(name, doc.Definitions)
			b, err := json.MarshalIndent(schema, "", "  ")
			if err != nil {
				return 0, err
			}
			if err := os.WriteFile(filepath.Join(tmp, file), append(b, '\n'), 0o644); err != nil {
				return 0, err
			}
			written[file] = name
		}
	}
	if len(written) == 0 {
		return 0, errors.New(swaggerPath + ": no definition names a group-version-kind")
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return 0, err
	}
	return len(written), nil
}

// normalize rewrites one definition: int-or-string and Quantity as the API server reads
// them, and strict objects.
func normalize(name string, def object) object {
	switch name {
	case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
		return object{"description": def["description"], "oneOf": []any{object{"type": "string"}, object{"type": "integer"}}}
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		return object{"description": def["description"], "oneOf": []any{object{"type": "string"}, object{"type": "number"}}}
	}
	return walk(def).(object)
}

func walk(v any) any {
	switch t := v.(type) {
	case object:
		if f, _ := t["format"].(string); f == "int-or-string" {
			return object{"oneOf": []any{object{"type": "string"}, object{"type": "integer"}}}
		}
		out := object{}
		for k, x := range t {
			if k == "properties" {
				// property names are not schema keywords: walk their schemas only
				props := object{}
				for pk, pv := range x.(object) {
					props[pk] = walk(pv)
				}
				out[k] = props
				continue
			}
			out[k] = walk(x)
		}
		if _, has := out["properties"]; has {
			if _, set := out["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = walk(x)
		}
		return out
	default:
		return v
	}
}

// standalone copies definition `root` with every definition it reaches embedded, so that
// the file validates without any other file.
func standalone(root string, defs map[string]object) object {
	reached := map[string]bool{}
	var visit func(v any)
	visit = func(v any) {
		switch t := v.(type) {
		case object:
			if ref, ok := t["$ref"].(string); ok && strings.HasPrefix(ref, refPrefix) {
				name := strings.TrimPrefix(ref, refPrefix)
				if !reached[name] {
					reached[name] = true
					visit(defs[name])
				}
			}
			for _, x := range t {
				visit(x)
			}
		case []any:
			for _, x := range t {
				visit(x)
			}
		}
	}
	visit(defs[root])
	out := object{}
	for k, v := range defs[root] {
		out[k] = v
	}
	if len(reached) > 0 {
		embedded := object{}
		for name := range reached {
			embedded[name] = defs[name]
		}
		out["definitions"] = embedded
	}
	return out
}

func yaml2json(in io.Reader, out io.Writer) error {
	dec := yaml.NewDecoder(in)
	docs := []any{}
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if v == nil {
			continue
		}
		j, err := jsonable(v)
		if err != nil {
			return err
		}
		docs = append(docs, j)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", " ")
	return enc.Encode(docs)
}

// jsonable turns what yaml.v3 decodes into values encoding/json accepts.
func jsonable(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			j, err := jsonable(x)
			if err != nil {
				return nil, err
			}
			out[k] = j
		}
		return out, nil
	case map[any]any:
		out := map[string]any{}
		for k, x := range t {
			j, err := jsonable(x)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = j
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			j, err := jsonable(x)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	default:
		return v, nil
	}
}
