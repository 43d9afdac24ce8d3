package manifests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Image is one image reference the deployment pins.
type Image struct {
	Repository string
	Tag        string
}

// ChartImages reads the images the Helm chart pins: the nvmeof-csi image at the chart's
// appVersion and every sidecar of values.yaml, sorted by repository. The kustomize base's
// images block is derived from the chart, whose sidecar tags repeat versions.env (checked by
// TestHelmSidecarsMatchVersions).
func ChartImages(chartDir string) ([]Image, error) {
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := readYAML(filepath.Join(chartDir, "Chart.yaml"), &chart); err != nil {
		return nil, err
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
		Sidecars map[string]struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"sidecars"`
	}
	if err := readYAML(filepath.Join(chartDir, "values.yaml"), &values); err != nil {
		return nil, err
	}
	if values.Image.Tag != "" {
		return nil, fmt.Errorf("values.yaml: image.tag must stay empty (it defaults to appVersion, %s)", chart.AppVersion)
	}
	images := []Image{{values.Image.Repository, chart.AppVersion}}
	for name, s := range values.Sidecars {
		if s.Repository == "" || s.Tag == "" {
			return nil, fmt.Errorf("values.yaml: sidecars.%s needs repository and tag", name)
		}
		images = append(images, Image{s.Repository, s.Tag})
	}
	sort.Slice(images, func(i, j int) bool { return images[i].Repository < images[j].Repository })
	return images, nil
}

func readYAML(path string, into any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// The generated block of the kustomize base's kustomization.yaml.
const (
	imagesBegin = "# BEGIN generated images"
	imagesEnd   = "# END generated images"
)

// ImagesBlock is the kustomize images block, with its markers, for images.
func ImagesBlock(images []Image) string {
	var b strings.Builder
	b.WriteString(imagesBegin + " (tests/manifests/cmd/gen-images, from the Helm chart's values.yaml\n")
	b.WriteString("# and appVersion; edit those and regenerate)\nimages:\n")
	for _, im := range images {
		fmt.Fprintf(&b, "- name: %s\n  newTag: %s\n", im.Repository, im.Tag)
	}
	b.WriteString(imagesEnd + "\n")
	return b.String()
}

// SpliceImages replaces the generated images block of a kustomization.yaml.
func SpliceImages(kustomization []byte, block string) ([]byte, error) {
	begin := bytes.Index(kustomization, []byte(imagesBegin))
	end := bytes.Index(kustomization, []byte(imagesEnd+"\n"))
	if begin < 0 || end < begin {
		return nil, fmt.Errorf("no %q ... %q block", imagesBegin, imagesEnd)
	}
	var out bytes.Buffer
	out.Write(kustomization[:begin])
	out.WriteString(block)
	out.Write(kustomization[end+len(imagesEnd)+1:])
	return out.Bytes(), nil
}

// GenerateKustomization returns the kustomize base's kustomization.yaml as it should be:
// its current content with the images block regenerated from the chart.
func GenerateKustomization(root string) (path string, want []byte, err error) {
	images, err := ChartImages(filepath.Join(root, Chart))
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(root, KustomizeBase, "kustomization.yaml")
	cur, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	want, err = SpliceImages(cur, ImagesBlock(images))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	return path, want, nil
}
