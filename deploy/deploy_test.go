// Package deploy holds no code: its test checks the deployment files beside it (the
// Dockerfile, the compose file, the Kubernetes manifests, the systemd unit and the
// mailgate configurations they carry) against each other and against mailgate's own
// configuration rules. It runs in `go test ./...`, needs no network, and skips, saying
// why, the checks whose tools (systemd-analyze, kubectl, docker) are missing.
package deploy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/server/apikey"
)

// The contract every deployment file keeps: where the configuration is, which ports the
// image exposes, and who the container runs as.
const (
	configPath = "/etc/mailgate/mailgate.yaml"
	nonrootUID = 65532
)

var containerPorts = map[string]int{"http": 8080, "grpc": 9090, "smtp": 2525}

// ---------------------------------------------------------------------------------------
// Every YAML file

func TestEveryYAMLFileParses(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "secrets" {
			return filepath.SkipDir // made by hand for compose; not ours
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found only %d YAML files under deploy/: %v", len(files), files)
	}
	for _, f := range files {
		docs := readDocs(t, f)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", f)
		}
	}
}

// readDocs parses every document of a YAML file (yaml.v3 also refuses duplicate keys).
func readDocs(t *testing.T, file string) []*yaml.Node {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return parseDocs(t, file, b)
}

func parseDocs(t *testing.T, name string, b []byte) []*yaml.Node {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(n.Content) > 0 {
			docs = append(docs, &n)
		}
	}
}

// ---------------------------------------------------------------------------------------
// mailgate configurations

// secretRefs finds the files a configuration reads from one directory (its *_file
// secrets, certificates and keys): dir is the literal text before "/<name>", a path or a
// ${VAR:-default} form. Comment lines do not count.
func secretRefs(cfg, dir string) []string {
	re := regexp.MustCompile(regexp.QuoteMeta(dir) + `/([A-Za-z0-9._-]+)`)
	set := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(uncommented(cfg), -1) {
		set[m[1]] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// writeSecrets writes a valid secret for each name into dir: a fresh API key hash for
// *.hash, a certificate for relay.contoso.com for *.crt and its key for *.key, and a
// dummy client secret otherwise.
func writeSecrets(t *testing.T, dir string, names []string) {
	t.Helper()
	var certPEM, keyPEM []byte
	for _, name := range names {
		var content []byte
		switch {
		case strings.HasSuffix(name, "hash"): // billing-app.hash, app-key-hash
			_, hash := apikey.Generate()
			content = []byte(hash + "\n")
		case strings.HasSuffix(name, ".crt"), strings.HasSuffix(name, ".key"):
			if certPEM == nil {
				certPEM, keyPEM = selfSigned(t, "relay.contoso.com")
			}
			content = certPEM
			if strings.HasSuffix(name, ".key") {
				content = keyPEM
			}
		default:
			content = []byte("a-client-secret-for-the-check\n")
		}
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// uncommented drops the lines that are only a YAML comment.
func uncommented(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func validate(t *testing.T, name, cfg string) *config.Config {
	t.Helper()
	c, err := app.ParseAndValidate([]byte(cfg), name)
	if err != nil {
		t.Fatalf("%s does not pass mailgate's validation:\n%v", name, err)
	}
	return c
}

func port(t *testing.T, what, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %q: port is not a number", what, hostport)
	}
	return n
}

// checkContainerListeners: a configuration for a container listens on all interfaces
// (the embedded default's loopback is unreachable from outside), on the image's ports.
func checkContainerListeners(t *testing.T, name string, c *config.Config) {
	t.Helper()
	for _, l := range []struct{ what, addr, port string }{
		{"listen.http", c.Listen.HTTP, "http"},
		{"listen.grpc", c.Listen.GRPC, "grpc"},
		{"shim.listen", c.Shim.Listen, "smtp"},
	} {
		host, _, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Errorf("%s %s: %q: %v", name, l.what, l.addr, err)
			continue
		}
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			t.Errorf("%s %s: %q is loopback: unreachable from outside the container", name, l.what, l.addr)
		}
		if got := port(t, name+" "+l.what, l.addr); got != containerPorts[l.port] {
			t.Errorf("%s %s: port %d, but the image exposes %s on %d", name, l.what, got, l.port, containerPorts[l.port])
		}
	}
	if c.Log.Format != "json" {
		t.Errorf("%s: log.format %q: want json for a log collector", name, c.Log.Format)
	}
}

// ---------------------------------------------------------------------------------------
// Dockerfile

func readDockerfile(t *testing.T) (all []string, final []string) {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		all = append(all, cur.String())
		cur.Reset()
	}
	for i := len(all) - 1; i >= 0; i-- {
		if strings.HasPrefix(all[i], "FROM ") {
			return all, all[i:]
		}
	}
	t.Fatal("Dockerfile: no FROM")
	return nil, nil
}

func TestDockerfile(t *testing.T) {
	all, final := readDockerfile(t)
	text := strings.Join(all, "\n")

	// The build stage's Go is the go.mod's.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVer == nil {
		t.Fatal("go.mod: no go directive")
	}
	if m := regexp.MustCompile(`ARG GO_IMAGE=golang:(\d+\.\d+)\.\d+-\w+`).FindStringSubmatch(text); m == nil {
		t.Errorf("Dockerfile: want ARG GO_IMAGE=golang:X.Y.Z-<debian release> (a pinned patch release)")
	} else if m[1] != string(goVer[1]) {
		t.Errorf("Dockerfile builds with Go %s, go.mod says go %s", m[1], goVer[1])
	}

	// The build is `go build ./cmd/mailgate`, static, with the version set where
	// `mailgate version` reads it.
	var build string
	for _, l := range all {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			build = l
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-X main.version=${VERSION}`, "-o /mailgate", "./cmd/mailgate"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile: the go build step lacks %q:\n%s", want, build)
		}
	}
	mainGo, err := os.ReadFile("../cmd/mailgate/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^package main$`).Match(mainGo) || !regexp.MustCompile(`(?m)^var version = `).Match(mainGo) {
		t.Error("cmd/mailgate/main.go no longer has `var version` in package main: -X main.version does nothing")
	}
	if !strings.Contains(text, "COPY go.mod go.sum ./") {
		t.Error("Dockerfile: want COPY go.mod go.sum ./ before the sources (module download cache)")
	}
	// `go mod download` reads the go.mod of every module replaced by a local directory.
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	download := strings.Index(text, "go mod download")
	for _, m := range regexp.MustCompile(`(?m)^replace \S+ => \./(\S+)$`).FindAllSubmatch(goMod, -1) {
		dir := string(m[1])
		want := fmt.Sprintf("COPY %[1]s/go.mod %[1]s/go.sum ./%[1]s/", dir)
		if i := strings.Index(text, want); i < 0 || i > download {
			t.Errorf("Dockerfile: want %q before go mod download (go.mod replaces a module with ./%s)", want, dir)
		}
	}

	// The runtime stage.
	if !regexp.MustCompile(`^FROM \$\{RUNTIME_IMAGE\}$`).MatchString(final[0]) ||
		!strings.Contains(text, "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("Dockerfile: want the final stage FROM distroless static nonroot, got %q", final[0])
	}
	instr := func(name string) []string {
		var out []string
		for _, l := range final {
			if rest, ok := strings.CutPrefix(l, name+" "); ok {
				out = append(out, rest)
			}
		}
		return out
	}
	if u := instr("USER"); len(u) != 1 || u[0] != fmt.Sprintf("%d:%d", nonrootUID, nonrootUID) {
		t.Errorf("Dockerfile: final USER %v, want %d:%d (numeric, for runAsNonRoot)", u, nonrootUID, nonrootUID)
	}
	var exposed []int
	for _, e := range instr("EXPOSE") {
		for _, f := range strings.Fields(e) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Errorf("Dockerfile: EXPOSE %q", f)
			}
			exposed = append(exposed, n)
		}
	}
	slices.Sort(exposed)
	if want := slices.Sorted(maps.Values(containerPorts)); !slices.Equal(exposed, want) {
		t.Errorf("Dockerfile: EXPOSE %v, want %v", exposed, want)
	}
	if e := instr("ENTRYPOINT"); len(e) != 1 || e[0] != `["/mailgate"]` {
		t.Errorf("Dockerfile: ENTRYPOINT %v, want [\"/mailgate\"]", e)
	}
	if c := instr("CMD"); len(c) != 1 || c[0] != fmt.Sprintf(`["serve", "--config", %q]`, configPath) {
		t.Errorf("Dockerfile: CMD %v, want serve --config %s", c, configPath)
	}
}

// The context exclusions must not drop what the build needs.
func TestDockerignoreKeepsTheSources(t *testing.T) {
	b, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	needed := []string{"go.mod", "go.sum", "cmd/mailgate/main.go", "config/default.yaml", "openapi/mailgate.swagger.json"}
	for _, n := range needed {
		if _, err := os.Stat(filepath.Join("..", n)); err != nil {
			t.Errorf("the build needs %s: %v", n, err)
		}
		for _, p := range patterns {
			if dockerignoreMatches(p, n) {
				t.Errorf("Dockerfile.dockerignore: %q excludes %s, which the build needs", p, n)
			}
		}
	}
	for _, secret := range []string{"deploy/secrets/app-key-hash", ".git/config", "mailgate"} {
		if !slices.ContainsFunc(patterns, func(p string) bool { return dockerignoreMatches(p, secret) }) {
			t.Errorf("Dockerfile.dockerignore: nothing excludes %s", secret)
		}
	}
}

// dockerignoreMatches is a simple model of .dockerignore matching: a pattern matches a
// path or any of its parent directories, and a leading **/ matches at any depth.
func dockerignoreMatches(pattern, p string) bool {
	anyDepth := false
	if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
		pattern, anyDepth = rest, true
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		for j := i + 1; j <= len(parts); j++ {
			if i > 0 && !anyDepth {
				break
			}
			if ok, _ := path.Match(pattern, strings.Join(parts[i:j], "/")); ok {
				return true
			}
		}
	}
	return false
}

// With a Docker engine, let BuildKit check the Dockerfile. The full build is
// `deploy/check.sh --docker` (minutes from a cold cache: too slow for go test).
func TestDockerBuildCheck(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: Dockerfile checked as text only")
	}
	if out, err := run(t, 10*time.Second, "..", "docker", "info"); err != nil {
		t.Skipf("docker info fails (no Docker engine here?): Dockerfile checked as text only: %s", lastLine(out))
	}
	if out, err := run(t, 10*time.Second, "..", "docker", "buildx", "version"); err != nil {
		t.Skipf("docker buildx is missing, so docker build --check is not available: %s", firstLine(out))
	}
	if out, err := run(t, 120*time.Second, "..", "docker", "build", "--check", "-f", "deploy/Dockerfile", "."); err != nil {
		t.Errorf("docker build --check -f deploy/Dockerfile .: %v\n%s", err, out)
	}
}

// ---------------------------------------------------------------------------------------
// Compose

type composeFile struct {
	Services map[string]struct {
		Build struct {
			Context    string
			Dockerfile string
		}
		Image     string
		Command   []string
		DependsOn map[string]struct {
			Condition string
		} `yaml:"depends_on"`
		StopGracePeriod string `yaml:"stop_grace_period"`
		Environment     map[string]string
		Volumes         []string
		Secrets         []string
		Ports           []string
		ReadOnly        bool     `yaml:"read_only"`
		CapDrop         []string `yaml:"cap_drop"`
		Healthcheck     *struct {
			Test []string
		}
	}
	Secrets map[string]struct {
		File string
	}
	Volumes map[string]any
}

func TestCompose(t *testing.T) {
	var cf composeFile
	docs := readDocs(t, "compose.yaml")
	if err := docs[0].Decode(&cf); err != nil {
		t.Fatal(err)
	}
	mg, ok := cf.Services["mailgate"]
	if !ok {
		t.Fatal("compose.yaml: no service mailgate")
	}
	redis, ok := cf.Services["redis"]
	if !ok {
		t.Fatal("compose.yaml: no service redis")
	}
	if len(cf.Services) != 2 {
		t.Errorf("compose.yaml: services %v, want mailgate and redis", slices.Sorted(maps.Keys(cf.Services)))
	}

	// The image is built from this repository with deploy/Dockerfile.
	if ctx := filepath.Clean(mg.Build.Context); ctx != ".." || mg.Build.Dockerfile != "deploy/Dockerfile" {
		t.Errorf("compose.yaml: build %q with %q, want the repository root with deploy/Dockerfile", mg.Build.Context, mg.Build.Dockerfile)
	}
	if !slices.Equal(mg.Command, []string{"serve", "--config", configPath}) {
		t.Errorf("compose.yaml: command %v", mg.Command)
	}
	if mg.DependsOn["redis"].Condition != "service_healthy" {
		t.Error("compose.yaml: mailgate must wait for redis to be healthy (depends_on condition service_healthy)")
	}
	if redis.Healthcheck == nil || !slices.Contains(redis.Healthcheck.Test, "ping") {
		t.Error("compose.yaml: redis needs a healthcheck (redis-cli ping)")
	}
	if !mg.ReadOnly || !slices.Contains(mg.CapDrop, "ALL") {
		t.Error("compose.yaml: mailgate should run read_only with cap_drop: [ALL]")
	}

	// The configuration is mounted where the image looks for it.
	var cfgFile string
	for _, v := range mg.Volumes {
		src, rest, _ := strings.Cut(v, ":")
		if dst, _, _ := strings.Cut(rest, ":"); dst == configPath {
			cfgFile = src
		}
	}
	if cfgFile != "./mailgate.compose.yaml" {
		t.Fatalf("compose.yaml: %s comes from %q, want ./mailgate.compose.yaml", configPath, cfgFile)
	}
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := string(b)

	// Every secret the configuration reads is a compose secret of the service, from a
	// file under ./secrets/ (which deploy/.gitignore keeps out of git).
	const secretsDir = "${MAILGATE_SECRETS:-/run/secrets}"
	refs := secretRefs(cfgText, secretsDir)
	if len(refs) == 0 {
		t.Fatalf("%s reads no secret from %s", cfgFile, secretsDir)
	}
	if got := slices.Sorted(slices.Values(mg.Secrets)); !slices.Equal(got, refs) {
		t.Errorf("compose.yaml: mailgate's secrets %v, but %s reads %v", got, cfgFile, refs)
	}
	for _, s := range mg.Secrets {
		f := cf.Secrets[s].File
		if !strings.HasPrefix(f, "./secrets/") {
			t.Errorf("compose.yaml: secret %s from %q, want a file under ./secrets/", s, f)
		}
	}
	if strings.Contains(cfgText, "/run/secrets/") && !strings.Contains(cfgText, secretsDir) {
		t.Errorf("%s: read secrets through %s/NAME, so that a check can point elsewhere", cfgFile, secretsDir)
	}

	// It validates, as it would in the container, with both backends on the route.
	dir := t.TempDir()
	writeSecrets(t, dir, refs)
	t.Setenv("MAILGATE_SECRETS", dir)
	var c *config.Config
	for _, backend := range []string{"", "m365"} {
		t.Setenv("MAILGATE_BACKEND", backend)
		c = validate(t, cfgFile+" (MAILGATE_BACKEND="+backend+")", cfgText)
		checkContainerListeners(t, cfgFile, c)
		if host, _, _ := strings.Cut(strings.TrimPrefix(c.Redis.URL, "redis://"), ":"); host != "redis" {
			t.Errorf("%s: redis.url %q: want the compose service redis", cfgFile, c.Redis.URL)
		}
		wantBackend := cmp.Or(backend, "outbox")
		if c.Routes[0].Backend != wantBackend {
			t.Errorf("%s: with MAILGATE_BACKEND=%q the route goes to %q", cfgFile, backend, c.Routes[0].Backend)
		}
	}
	// Docker's default stop timeout is 10 s: compose must wait for the drain.
	grace, err := time.ParseDuration(mg.StopGracePeriod)
	if err != nil || grace <= c.Listen.ShutdownTimeout {
		t.Errorf("compose.yaml: stop_grace_period %q must be longer than listen.shutdown_timeout (%s)", mg.StopGracePeriod, c.Listen.ShutdownTimeout)
	}
	for _, p := range mg.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 3 || parts[0] != "127.0.0.1" {
			t.Errorf("compose.yaml: port %q: publish on 127.0.0.1 by default", p)
			continue
		}
		n, _ := strconv.Atoi(parts[2])
		if !slices.Contains(slices.Collect(maps.Values(containerPorts)), n) {
			t.Errorf("compose.yaml: port %q is none of the image's ports", p)
		}
	}
	if len(mg.Ports) != len(containerPorts) {
		t.Errorf("compose.yaml: publishes %v, want one per port of %v", mg.Ports, containerPorts)
	}
	for name := range mg.Environment {
		if !strings.Contains(cfgText, "${"+name) {
			t.Errorf("compose.yaml: passes %s, which %s does not read", name, cfgFile)
		}
	}
}

// With the compose plugin, let it check the file too (with stand-in secret files).
func TestComposeConfig(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: compose.yaml checked as YAML only")
	}
	if out, err := run(t, 10*time.Second, ".", "docker", "compose", "version"); err != nil {
		t.Skipf("the docker compose plugin is missing: compose.yaml checked as YAML only: %s", firstLine(out))
	}
	dir := t.TempDir()
	for _, f := range []string{"compose.yaml", "mailgate.compose.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeSecrets(t, filepath.Join(dir, "secrets"), []string{"app-key-hash", "graph-client-secret"})
	if out, err := run(t, 30*time.Second, dir, "docker", "compose", "-f", "compose.yaml", "config", "--quiet"); err != nil {
		t.Errorf("docker compose config: %v\n%s", err, out)
	}
}

// ---------------------------------------------------------------------------------------
// Kubernetes

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string
	Metadata   struct {
		Name   string
		Labels map[string]string
	}
	Data       map[string]string
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node

	file string
}

type container struct {
	Name  string
	Image string
	Args  []string
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep *struct{ Seconds int }
		} `yaml:"preStop"`
	}
	Resources struct {
		Requests map[string]string
		Limits   map[string]string
	}
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct{ Drop []string }
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port any
	} `yaml:"httpGet"`
}

type deploymentSpec struct {
	Replicas int
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	Template struct {
		Metadata struct{ Labels map[string]string }
		Spec     struct {
			TerminationGracePeriodSeconds int  `yaml:"terminationGracePeriodSeconds"`
			AutomountServiceAccountToken  bool `yaml:"automountServiceAccountToken"`
			SecurityContext               struct {
				RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				RunAsUser    int   `yaml:"runAsUser"`
			} `yaml:"securityContext"`
			Containers []container
			Volumes    []struct {
				Name      string
				ConfigMap *struct{ Name string } `yaml:"configMap"`
				Secret    *struct {
					SecretName string `yaml:"secretName"`
				}
			}
		}
	}
}

type serviceSpec struct {
	Selector map[string]string
	Ports    []struct {
		Name       string
		Port       int
		TargetPort any `yaml:"targetPort"`
	}
}

type pdbSpec struct {
	MinAvailable any `yaml:"minAvailable"`
	Selector     struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
}

func loadObjects(t *testing.T, files ...string) map[string]*k8sObject {
	t.Helper()
	objs := map[string]*k8sObject{}
	for _, f := range files {
		for _, d := range readDocs(t, f) {
			o := &k8sObject{file: f}
			if err := d.Decode(o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: an object without apiVersion, kind or metadata.name", f)
			}
			id := o.Kind + "/" + o.Metadata.Name
			if _, dup := objs[id]; dup {
				t.Errorf("%s: %s is defined twice", f, id)
			}
			objs[id] = o
		}
	}
	return objs
}

func get[T any](t *testing.T, objs map[string]*k8sObject, id string) (*k8sObject, T) {
	t.Helper()
	var spec T
	o, ok := objs[id]
	if !ok {
		t.Fatalf("deploy/kubernetes: no %s among %v", id, slices.Sorted(maps.Keys(objs)))
	}
	if o.Spec.Kind != 0 {
		if err := o.Spec.Decode(&spec); err != nil {
			t.Fatalf("%s %s: spec: %v", o.file, id, err)
		}
	}
	return o, spec
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type kustomization struct {
	Resources []string
	Images    []struct {
		Name    string
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	}
}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	var k kustomization
	if err := readDocs(t, "kubernetes/kustomization.yaml")[0].Decode(&k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKubernetes(t *testing.T) {
	k := readKustomization(t)
	var files []string
	for _, r := range k.Resources {
		files = append(files, filepath.Join("kubernetes", r))
	}
	// Every manifest is applied by kustomize, except the throwaway Redis.
	onDisk, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range onDisk {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && base != "redis-dev.yaml" && !slices.Contains(k.Resources, base) {
			t.Errorf("kubernetes/kustomization.yaml does not list %s", base)
		}
	}
	if slices.Contains(k.Resources, "redis-dev.yaml") {
		t.Error("kubernetes/kustomization.yaml must not apply redis-dev.yaml (no persistent volume, no password)")
	}
	objs := loadObjects(t, files...)

	_, dep := get[deploymentSpec](t, objs, "Deployment/mailgate")
	_, svc := get[serviceSpec](t, objs, "Service/mailgate")
	_, pdb := get[pdbSpec](t, objs, "PodDisruptionBudget/mailgate")
	cm, _ := get[struct{}](t, objs, "ConfigMap/mailgate-config")
	secret, _ := get[struct{}](t, objs, "Secret/mailgate-secrets")

	pod := dep.Template.Spec
	podLabels := dep.Template.Metadata.Labels
	if dep.Replicas != 2 {
		t.Errorf("Deployment: replicas %d, want 2", dep.Replicas)
	}
	if !selects(dep.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment: selector %v does not select its pods %v", dep.Selector.MatchLabels, podLabels)
	}
	if !selects(svc.Selector, podLabels) {
		t.Errorf("Service: selector %v does not select the pods %v", svc.Selector, podLabels)
	}
	if !selects(pdb.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget: selector %v does not select the pods %v", pdb.Selector.MatchLabels, podLabels)
	}
	if pdb.MinAvailable != 1 {
		t.Errorf("PodDisruptionBudget: minAvailable %v, want 1", pdb.MinAvailable)
	}
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser != nonrootUID {
		t.Errorf("Deployment: want runAsNonRoot: true and runAsUser: %d (the image's user)", nonrootUID)
	}
	if pod.AutomountServiceAccountToken {
		t.Error("Deployment: automountServiceAccountToken should be false: mailgate does not use the API")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("Deployment: want readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities.drop: [ALL]")
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("Deployment: no resources.requests.%s", r)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Error("Deployment: no resources.limits.memory")
	}

	// Ports: the container's named ports are the image's, and the Service uses them.
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if !maps.Equal(ports, containerPorts) {
		t.Errorf("Deployment: container ports %v, want %v", ports, containerPorts)
	}
	svcPorts := map[string]int{}
	for _, p := range svc.Ports {
		svcPorts[p.Name] = p.Port
		if tp, ok := p.TargetPort.(string); !ok || ports[tp] == 0 {
			t.Errorf("Service: port %s: targetPort %v is not a named container port", p.Name, p.TargetPort)
		}
	}
	if !maps.Equal(svcPorts, containerPorts) {
		t.Errorf("Service: ports %v, want %v", svcPorts, containerPorts)
	}

	// Probes.
	for _, p := range []struct {
		name, path string
		probe      *probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("Deployment: no %s httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != "http" {
			t.Errorf("Deployment: %s %s on port %v, want %s on port http", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, p.path)
		}
	}

	// The configuration: from the ConfigMap, at the path in args; the secrets from the
	// Secret, at the path the configuration reads them from.
	mounts := map[string]string{} // volume name -> mount path
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if !m.ReadOnly {
			t.Errorf("Deployment: volume %s is mounted writable", m.Name)
		}
	}
	var cfgDir, secretDir string
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name:
			cfgDir = mounts[v.Name]
		case v.Secret != nil && v.Secret.SecretName == secret.Metadata.Name:
			secretDir = mounts[v.Name]
		}
	}
	if cfgDir == "" || secretDir == "" {
		t.Fatalf("Deployment: want the ConfigMap %s and the Secret %s mounted (got %q, %q)", cm.Metadata.Name, secret.Metadata.Name, cfgDir, secretDir)
	}
	if strings.HasPrefix(secretDir+"/", cfgDir+"/") {
		t.Errorf("Deployment: the Secret is mounted inside the ConfigMap's volume (%s in %s)", secretDir, cfgDir)
	}
	if !slices.Equal(c.Args, []string{"serve", "--config", configPath}) || path.Dir(configPath) != cfgDir {
		t.Errorf("Deployment: args %v with the ConfigMap at %s, want serve --config %s", c.Args, cfgDir, configPath)
	}
	cfgText, ok := cm.Data[path.Base(configPath)]
	if !ok {
		t.Fatalf("ConfigMap: no key %s", path.Base(configPath))
	}
	refs := secretRefs(cfgText, secretDir)
	if len(refs) == 0 {
		t.Fatalf("ConfigMap: the configuration reads no secret from %s", secretDir)
	}
	if got := slices.Sorted(maps.Keys(secret.StringData)); !slices.Equal(got, refs) {
		t.Errorf("Secret: keys %v, but the configuration reads %v", got, refs)
	}

	// The placeholders must stop mailgate (an unedited Secret does not start)...
	dir := t.TempDir()
	for name, v := range secret.StringData {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := strings.ReplaceAll(cfgText, secretDir+"/", dir+"/")
	if _, err := app.ParseAndValidate([]byte(local), "configmap with placeholder secrets"); err == nil ||
		!strings.Contains(err.Error(), ".hash") {
		t.Errorf("the configuration validates with the Secret's placeholder hashes; it must not (err: %v)", err)
	}
	// ...and with real secrets it validates.
	writeSecrets(t, dir, refs)
	cfg := validate(t, "the ConfigMap's mailgate.yaml", local)
	checkContainerListeners(t, "ConfigMap", cfg)
	if !cfg.Redis.Enabled() {
		t.Error("ConfigMap: two replicas need redis")
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(cfg.Backends)), func(b *config.Backend) bool { return b.Type == "graph" }) ||
		!strings.Contains(cfgText, "client_secret_file: "+secretDir+"/") {
		t.Error("ConfigMap: want a graph backend with client_secret_file from the Secret")
	}

	// Shutdown: SIGTERM arrives after preStop; mailgate then drains for up to
	// shutdown_timeout; the kubelet kills at terminationGracePeriodSeconds.
	preStop := 0
	if s := c.Lifecycle.PreStop.Sleep; s != nil {
		preStop = s.Seconds
	}
	need := cfg.Listen.ShutdownTimeout + time.Duration(preStop)*time.Second
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= need {
		t.Errorf("Deployment: terminationGracePeriodSeconds %s must exceed preStop (%ds) + listen.shutdown_timeout (%s)",
			grace, preStop, cfg.Listen.ShutdownTimeout)
	}
	if dep.Replicas <= 1 {
		t.Error("Deployment: with one replica the PodDisruptionBudget blocks every drain")
	}

	// The trial Redis answers where the ConfigMap points.
	dev := loadObjects(t, "kubernetes/redis-dev.yaml")
	_, rsvc := get[serviceSpec](t, dev, "Service/redis")
	u := strings.TrimPrefix(cfg.Redis.URL, "redis://")
	host, rest, _ := strings.Cut(u, ":")
	p, _, _ := strings.Cut(rest, "/")
	if host != "redis" || len(rsvc.Ports) != 1 || strconv.Itoa(rsvc.Ports[0].Port) != p {
		t.Errorf("ConfigMap redis.url %q does not match redis-dev.yaml's Service redis", cfg.Redis.URL)
	}
}

// With kubectl, render the kustomization as `kubectl apply -k` would.
func TestKustomizeBuild(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed: kustomization.yaml checked as YAML only")
	}
	out, err := run(t, 30*time.Second, ".", "kubectl", "kustomize", "kubernetes")
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/kubernetes: %v\n%s", err, out)
	}
	var kinds []string
	var image string
	for _, d := range parseDocs(t, "kubectl kustomize output", out) {
		var o struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct{ Containers []struct{ Image string } }
				}
			}
		}
		if err := d.Decode(&o); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, o.Kind)
		if o.Kind == "Deployment" {
			image = o.Spec.Template.Spec.Containers[0].Image
		}
	}
	sort.Strings(kinds)
	want := []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kubectl kustomize renders %v, want %v", kinds, want)
	}
	k := readKustomization(t)
	if len(k.Images) != 1 || image != k.Images[0].NewName+":"+k.Images[0].NewTag {
		t.Errorf("kubectl kustomize: the Deployment's image is %q, not the kustomization's images: entry", image)
	}
}

// ---------------------------------------------------------------------------------------
// systemd and the example configuration it runs

type unitFile map[string]map[string][]string // section -> key -> values in order

func readUnit(t *testing.T, file string) unitFile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	var section string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", file, i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unitFile) one(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemdUnitAndExample(t *testing.T) {
	const unit = "systemd/mailgate.service"
	u := readUnit(t, unit)
	for k, want := range map[string]string{
		"User":            "mailgate",
		"Restart":         "on-failure",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
	} {
		if got := u.one("Service", k); got != want {
			t.Errorf("%s: %s=%q, want %q", unit, k, got, want)
		}
	}
	if typ := u.one("Service", "Type"); typ != "exec" && typ != "simple" {
		t.Errorf("%s: Type=%s: mailgate does not notify or fork; want exec or simple", unit, typ)
	}
	if got := u.one("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("%s: WantedBy=%s", unit, got)
	}
	exe := strings.Fields(u.one("Service", "ExecStart"))
	if !slices.Equal(exe, []string{"/usr/local/bin/mailgate", "serve", "--config", configPath}) {
		t.Errorf("%s: ExecStart=%v", unit, exe)
	}

	// The example is the unit's configuration: its secrets are the unit's credentials,
	// read from ${CREDENTIALS_DIRECTORY}, or from the credentials' sources outside
	// systemd.
	const example = "mailgate.example.yaml"
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := string(b)
	const credSource = "/etc/mailgate/credentials"
	refs := secretRefs(cfgText, "${CREDENTIALS_DIRECTORY:-"+credSource+"}")
	if len(refs) == 0 {
		t.Fatalf("%s reads nothing from ${CREDENTIALS_DIRECTORY:-%s}", example, credSource)
	}
	if n := strings.Count(uncommented(cfgText), "_file: "); n != len(refs) {
		t.Errorf("%s: %d *_file fields, %d of them from the credentials", example, n, len(refs))
	}
	var creds []string
	for _, lc := range u["Service"]["LoadCredential"] {
		id, src, _ := strings.Cut(lc, ":")
		creds = append(creds, id)
		if src != credSource+"/"+id {
			t.Errorf("%s: LoadCredential=%s: want the source %s/%s, as %s reads it outside systemd", unit, lc, credSource, id, example)
		}
	}
	slices.Sort(creds)
	if !slices.Equal(creds, refs) {
		t.Errorf("%s loads credentials %v, %s reads %v", unit, creds, example, refs)
	}

	dir := t.TempDir()
	writeSecrets(t, dir, refs)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	t.Setenv("MAILGATE_REDIS_URL", "")
	cfg := validate(t, example, cfgText)

	types := map[string]bool{}
	for _, b := range cfg.Backends {
		types[b.Type] = true
	}
	if !types["graph"] || !types["relay"] || !cfg.Redis.Enabled() || len(cfg.Shim.Devices) == 0 {
		t.Errorf("%s: want a real deployment: Redis, graph and relay backends, the shim with devices", example)
	}

	// Stop: systemd waits longer than mailgate drains.
	stop, err := time.ParseDuration(u.one("Service", "TimeoutStopSec"))
	if err != nil || stop <= cfg.Listen.ShutdownTimeout {
		t.Errorf("%s: TimeoutStopSec=%s must exceed listen.shutdown_timeout (%s)", unit, u.one("Service", "TimeoutStopSec"), cfg.Listen.ShutdownTimeout)
	}

	// A port below 1024 needs CAP_NET_BIND_SERVICE, and only then is it granted.
	low := false
	for _, a := range []string{cfg.Listen.HTTP, cfg.Listen.GRPC, cfg.Shim.Listen, cfg.Shim.ImplicitTLSListen} {
		if a != "" && port(t, example, a) < 1024 {
			low = true
		}
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if got := u.one("Service", k); low && got != "CAP_NET_BIND_SERVICE" || !low && got != "" {
			t.Errorf("%s: %s=%q, but a listener below port 1024 is %v", unit, k, got, low)
		}
	}
}

// systemd's own checks, with ExecStart pointed at a stand-in (verify insists that the
// binary exists).
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit was checked as text only")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "mailgate")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("systemd/mailgate.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "mailgate.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/mailgate"), []byte(stub)), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on unknown keys and bad values, but says so: any output fails.
	out, err := run(t, 20*time.Second, dir, sa, "verify", "--man=no", unit)
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = run(t, 20*time.Second, dir, sa, "security", "--offline=yes", unit)
	if err != nil && bytes.Contains(out, []byte("--offline")) {
		t.Skipf("systemd-analyze security --offline is not supported here: %s", firstLine(out))
	}
	m := regexp.MustCompile(`Overall exposure level for mailgate\.service: (\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security --offline=yes: no exposure level: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.5 {
		t.Errorf("systemd-analyze security: exposure %.1f, want at most 2.5 (1.5 as written): hardening was lost", level)
	}
}

// ---------------------------------------------------------------------------------------

func run(t *testing.T, timeout time.Duration, dir, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	return s[strings.LastIndexByte(s, '\n')+1:]
}
