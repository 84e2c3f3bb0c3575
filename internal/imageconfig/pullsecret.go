package imageconfig

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
)

// PullSecrets is a keychain made of image pull secrets (kubernetes.io/dockerconfigjson or
// kubernetes.io/dockercfg), as the kubelet reads them: the first secret with an entry for the
// image's registry wins. An image of another registry resolves to anonymous.
type PullSecrets struct {
	entries []entry
}

type entry struct {
	host string // "registry.example.com:5000", or "index.docker.io" for Docker Hub
	path string // a repository prefix the entry is limited to, "" for the whole registry
	cfg  authn.AuthConfig
}

// AddSecret adds the credentials of one pull secret.
func (p *PullSecrets) AddSecret(s *corev1.Secret) error {
	var auths map[string]authn.AuthConfig
	switch s.Type {
	case corev1.SecretTypeDockerConfigJson:
		var cfg struct {
			Auths map[string]authn.AuthConfig `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return fmt.Errorf("secret %s/%s: %s is not a docker config: %w", s.Namespace, s.Name, corev1.DockerConfigJsonKey, err)
		}
		auths = cfg.Auths
	case corev1.SecretTypeDockercfg:
		if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths); err != nil {
			return fmt.Errorf("secret %s/%s: %s is not a docker config: %w", s.Namespace, s.Name, corev1.DockerConfigKey, err)
		}
	default:
		return fmt.Errorf("secret %s/%s is of type %q, not an image pull secret (%s or %s)", s.Namespace, s.Name, s.Type,
			corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)
	}
	for key, cfg := range auths {
		host, path := splitRegistryKey(key)
		p.entries = append(p.entries, entry{host, path, cfg})
	}
	return nil
}

// splitRegistryKey reads a docker config key the way docker and the kubelet write them:
// "https://index.docker.io/v1/", "registry:5000", "registry/some/repo".
func splitRegistryKey(key string) (host, path string) {
	if u, err := url.Parse(key); err == nil && u.Host != "" {
		key = u.Host + u.Path
	}
	host, path, _ = strings.Cut(key, "/")
	if path == "v1" || path == "v1/" || path == "v2" || path == "v2/" {
		path = ""
	}
	switch host {
	case "docker.io", "registry-1.docker.io":
		host = "index.docker.io"
	}
	return host, strings.TrimSuffix(path, "/")
}

// Resolve implements authn.Keychain.
func (p *PullSecrets) Resolve(target authn.Resource) (authn.Authenticator, error) {
	full := target.String() // "registry/repo" for a repository, "registry" alone for the registry
	for _, e := range p.entries {
		if e.host != target.RegistryStr() {
			continue
		}
		if e.path != "" && full != e.host+"/"+e.path && !strings.HasPrefix(full, e.host+"/"+e.path+"/") {
			continue
		}
		return authn.FromConfig(e.cfg), nil
	}
	return authn.Anonymous, nil
}
