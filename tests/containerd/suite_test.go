// containerd's own content-store conformance suite, and its lease client,
// against `dist serve`.
//
// Every store the suite asks for is a fresh `dist serve` daemon on the
// suite's temporary root, reached through containerd's gRPC proxy clients
// (content/proxy, leases/proxy) exactly as containerd's tools reach a
// containerd. tests/test_serve_containerd.py builds this file in GOPATH mode
// against Debian's containerd 1.6 source and runs it; DIST_CMD (a JSON array)
// is the command that runs `dist` (for instance [".venv/bin/python", "-m",
// "ocidist"]).
package containerdsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/containerd/containerd/content"
	contentproxy "github.com/containerd/containerd/content/proxy"
	"github.com/containerd/containerd/content/testsuite"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/leases"
	leasesproxy "github.com/containerd/containerd/leases/proxy"
	"github.com/containerd/containerd/namespaces"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// daemon is one running `dist serve` and a connection to it.
type daemon struct {
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	stderr *bytes.Buffer
	root   string
}

func distCommand(t testing.TB) []string {
	text := os.Getenv("DIST_CMD")
	if text == "" {
		t.Skip("DIST_CMD is not set (run through tests/test_serve_containerd.py)")
	}
	var argv []string
	if err := json.Unmarshal([]byte(text), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("DIST_CMD must be a JSON array of strings: %v", err)
	}
	return argv
}

// startDaemon serves a fresh store under root on root/dist.sock.
func startDaemon(t testing.TB, root string) (*daemon, error) {
	argv := distCommand(t)
	store := filepath.Join(root, "store")
	sock := filepath.Join(root, "dist.sock")
	args := append(append([]string{}, argv[1:]...), "--root", store, "serve", "--address", "unix://"+sock)
	cmd := exec.Command(argv[0], args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, stderr: &stderr, root: root}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			d.kill()
			return nil, fmt.Errorf("dist serve did not listen on %s: %s", sock, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}
	conn, err := grpc.Dial("passthrough:///"+sock, grpc.WithInsecure(), grpc.WithContextDialer(dialer))
	if err != nil {
		d.kill()
		return nil, err
	}
	d.conn = conn
	return d, nil
}

func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
}

// stop ends the daemon with SIGTERM and checks that it exited cleanly and
// logged nothing that looks like a bug of its own (an internal error, a
// traceback): a client that closes or drops a stream is not one.
func (d *daemon) stop() error {
	if d.conn != nil {
		d.conn.Close()
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("dist serve exited with %v: %s", err, d.stderr.String())
		}
	case <-time.After(20 * time.Second):
		d.kill()
		return fmt.Errorf("dist serve did not stop on SIGTERM: %s", d.stderr.String())
	}
	log := d.stderr.String()
	for _, bad := range []string{"Traceback", "internal error", "Exception"} {
		if strings.Contains(log, bad) {
			return fmt.Errorf("dist serve logged %q:\n%s", bad, log)
		}
	}
	return nil
}

func TestContentSuite(t *testing.T) {
	distCommand(t)
	testsuite.ContentSuite(t, "dist", func(ctx context.Context, root string) (context.Context, content.Store, func() error, error) {
		d, err := startDaemon(t, root)
		if err != nil {
			return ctx, nil, nil, err
		}
		ctx = namespaces.WithNamespace(ctx, "testsuite")
		return ctx, contentproxy.NewContentStore(contentapi.NewContentClient(d.conn)), d.stop, nil
	})
}

func within(t *testing.T, what string, got, lo, hi time.Time) {
	t.Helper()
	if got.Before(lo) || got.After(hi) {
		t.Fatalf("%s %s, expected between %s and %s", what, got, lo, hi)
	}
}

func wantErr(t *testing.T, what string, err error, is func(error) bool, kind string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, expected %s", what, kind)
	}
	if !is(err) {
		t.Fatalf("%s: %v, expected %s", what, err, kind)
	}
}

func ids(ls []leases.Lease) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestLeases(t *testing.T) {
	distCommand(t)
	root, err := os.MkdirTemp("", "dist-leases-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	d, err := startDaemon(t, root)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.stop(); err != nil {
			t.Error(err)
		}
	}()
	lm := leasesproxy.NewLeaseManager(leasesapi.NewLeasesClient(d.conn))
	cs := contentproxy.NewContentStore(contentapi.NewContentClient(d.conn))
	ns1 := namespaces.WithNamespace(context.Background(), "ns1")
	ns2 := namespaces.WithNamespace(context.Background(), "ns2")

	t.Run("Create", func(t *testing.T) {
		before := time.Now()
		l, err := lm.Create(ns1, leases.WithID("lease-1"), leases.WithLabels(map[string]string{"team": "a"}),
			leases.WithExpiration(time.Hour))
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if l.ID != "lease-1" || l.Labels["team"] != "a" || l.Labels["containerd.io/gc.expire"] == "" {
			t.Fatalf("unexpected lease %+v", l)
		}
		within(t, "created at", l.CreatedAt, before, after)
		_, err = lm.Create(ns1, leases.WithID("lease-1"))
		wantErr(t, "create an existing lease", err, errdefs.IsAlreadyExists, "already exists")
		if _, err := lm.Create(ns1, leases.WithID("lease-2"), leases.WithLabels(map[string]string{"team": "b"})); err != nil {
			t.Fatal(err)
		}
		// No id: the daemon picks one, as containerd's service does.
		l, err = lm.Create(ns1)
		if err != nil {
			t.Fatal(err)
		}
		if l.ID == "" {
			t.Fatal("a lease created without an id has none")
		}
		if err := lm.Delete(ns1, l); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ListFilters", func(t *testing.T) {
		for _, tc := range []struct {
			filters []string
			want    []string
		}{
			{nil, []string{"lease-1", "lease-2"}},
			{[]string{"id==lease-1"}, []string{"lease-1"}},
			{[]string{"id!=lease-1"}, []string{"lease-2"}},
			{[]string{`labels.team==b`}, []string{"lease-2"}},
			{[]string{`labels."containerd.io/gc.expire"`}, []string{"lease-1"}},
			{[]string{"id~=^lease-[12]$,labels.team==a"}, []string{"lease-1"}},
			{[]string{"id==lease-1", "id==lease-2"}, []string{"lease-1", "lease-2"}},
			{[]string{"labels.team==c"}, []string{}},
		} {
			got, err := lm.List(ns1, tc.filters...)
			if err != nil {
				t.Fatalf("list %q: %v", tc.filters, err)
			}
			if !sameStrings(ids(got), tc.want) {
				t.Fatalf("list %q: got %v, want %v", tc.filters, ids(got), tc.want)
			}
		}
		_, err := lm.List(ns1, "==x")
		wantErr(t, "list with a malformed filter", err, errdefs.IsInvalidArgument, "invalid argument")
	})

	dgst := digest.FromString("leased content")
	l1 := leases.Lease{ID: "lease-1"}
	t.Run("Resources", func(t *testing.T) {
		add := []leases.Resource{
			{ID: dgst.String(), Type: "content"},
			{ID: "ingest-ref", Type: "ingests"},
			{ID: "snap-key", Type: "snapshots/overlayfs"},
		}
		for _, r := range add {
			if err := lm.AddResource(ns1, l1, r); err != nil {
				t.Fatalf("add %+v: %v", r, err)
			}
		}
		// Adding twice is not an error.
		if err := lm.AddResource(ns1, l1, add[0]); err != nil {
			t.Fatal(err)
		}
		got, err := lm.ListResources(ns1, l1)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(add) {
			t.Fatalf("resources %v, want %v", got, add)
		}
		for _, tc := range []struct {
			r    leases.Resource
			is   func(error) bool
			kind string
		}{
			{leases.Resource{ID: "not-a-digest", Type: "content"}, errdefs.IsInvalidArgument, "invalid argument"},
			{leases.Resource{ID: dgst.String(), Type: "content/x"}, errdefs.IsInvalidArgument, "invalid argument"},
			{leases.Resource{ID: "k", Type: "snapshots"}, errdefs.IsInvalidArgument, "invalid argument"},
			{leases.Resource{ID: "k", Type: "containers"}, errdefs.IsNotImplemented, "not implemented"},
		} {
			err := lm.AddResource(ns1, l1, tc.r)
			wantErr(t, fmt.Sprintf("add %+v", tc.r), err, tc.is, tc.kind)
		}
		err = lm.AddResource(ns1, leases.Lease{ID: "no-such-lease"}, add[0])
		wantErr(t, "add to a missing lease", err, errdefs.IsNotFound, "not found")
		if err := lm.DeleteResource(ns1, l1, add[1]); err != nil {
			t.Fatal(err)
		}
		got, err = lm.ListResources(ns1, l1)
		if err != nil {
			t.Fatal(err)
		}
		if want := []leases.Resource{add[0], add[2]}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("resources after delete %v, want %v", got, want)
		}
	})

	t.Run("ContentUnderLease", func(t *testing.T) {
		data := []byte("written under lease-2")
		ctx := leases.WithLease(ns1, "lease-2")
		desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(ctx, cs, "leased-write", bytes.NewReader(data), desc); err != nil {
			t.Fatal(err)
		}
		got, err := lm.ListResources(ns1, leases.Lease{ID: "lease-2"})
		if err != nil {
			t.Fatal(err)
		}
		want := []leases.Resource{{ID: desc.Digest.String(), Type: "content"}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("resources of lease-2 %v, want %v", got, want)
		}
	})

	t.Run("Namespaces", func(t *testing.T) {
		got, err := lm.List(ns2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("ns2 lists ns1's leases: %v", ids(got))
		}
		_, err = lm.ListResources(ns2, l1)
		wantErr(t, "resources of another namespace's lease", err, errdefs.IsNotFound, "not found")
		err = lm.AddResource(ns2, l1, leases.Resource{ID: dgst.String(), Type: "content"})
		wantErr(t, "add to another namespace's lease", err, errdefs.IsNotFound, "not found")
		err = lm.Delete(ns2, l1)
		wantErr(t, "delete another namespace's lease", err, errdefs.IsNotFound, "not found")
		// The same id is free in another namespace, and a lease of its own.
		if _, err := lm.Create(ns2, leases.WithID("lease-1")); err != nil {
			t.Fatal(err)
		}
		res, err := lm.ListResources(ns2, l1)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 0 {
			t.Fatalf("ns2's lease-1 has ns1's resources: %v", res)
		}
		got, err = lm.List(ns2)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStrings(ids(got), []string{"lease-1"}) {
			t.Fatalf("ns2 leases %v", ids(got))
		}
		for what, call := range map[string]func(context.Context) error{
			"create": func(ctx context.Context) error { _, err := lm.Create(ctx, leases.WithID("x")); return err },
			"list":   func(ctx context.Context) error { _, err := lm.List(ctx); return err },
			"delete": func(ctx context.Context) error { return lm.Delete(ctx, l1) },
			"add": func(ctx context.Context) error {
				return lm.AddResource(ctx, l1, leases.Resource{ID: dgst.String(), Type: "content"})
			},
			"resources": func(ctx context.Context) error { _, err := lm.ListResources(ctx, l1); return err },
		} {
			err := call(context.Background())
			wantErr(t, what+" without a namespace", err, errdefs.IsFailedPrecondition, "failed precondition")
			if !strings.Contains(err.Error(), "namespace is required") {
				t.Fatalf("%s without a namespace: %v", what, err)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		if err := lm.Delete(ns1, l1, leases.SynchronousDelete); err != nil {
			t.Fatal(err)
		}
		err := lm.Delete(ns1, l1)
		wantErr(t, "delete a deleted lease", err, errdefs.IsNotFound, "not found")
		_, err = lm.ListResources(ns1, l1)
		wantErr(t, "resources of a deleted lease", err, errdefs.IsNotFound, "not found")
		got, err := lm.List(ns1)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStrings(ids(got), []string{"lease-2"}) {
			t.Fatalf("ns1 leases after delete %v", ids(got))
		}
		// ns2's lease of the same id is untouched.
		got, err = lm.List(ns2)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStrings(ids(got), []string{"lease-1"}) {
			t.Fatalf("ns2 leases after ns1's delete %v", ids(got))
		}
	})
}
