// No Docker engine runs here: check that the image gets every shared library the addon links, and
// run the compiled binary in a root that holds only what the distroless image would.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { librdkafkaVersion } from "../src/kafka/index.ts";
import { ROOT } from "./support/harness.ts";

const run = (cmd: string[]) => {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return r.stdout.toString();
};
// what gcr.io/distroless/cc-debian12 has: glibc, libgcc_s, libstdc++
const DISTROLESS_CC = ["ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libgcc_s.so.1", "libstdc++.so.6"];
const addon = `${ROOT}native/build/cdc_kafka.node`;
const runtimeLibs = () => run(["bash", `${ROOT}scripts/runtime-libs.sh`, addon]).split("\n").filter(Boolean);
const base = (p: string) => p.replace(/^.*\//, "");

test("librdkafka is linked into the addon; every other library it needs is in the distroless base or copied by the Dockerfile", () => {
  const linked = run(["ldd", addon])
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0]!)
    .filter(Boolean)
    .map(base);
  const copied = new Set(runtimeLibs().map(base));
  expect(linked.filter((l) => l.startsWith("librdkafka"))).toEqual([]);
  expect(copied.has("libssl.so.3")).toBe(true);
  for (const lib of linked) expect(lib === "linux-vdso.so.1" || DISTROLESS_CC.includes(lib) || copied.has(lib)).toBe(true);
  for (const lib of copied) expect(DISTROLESS_CC.includes(lib)).toBe(false);
});

// A root with the binary, /tmp, and only the distroless base libraries plus runtime-libs.sh's.
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
function cleanRoot(binary: string, leaveOut?: string): string {
  const root = mkdtempSync(join(tmpdir(), "cdc-sink-root-"));
  roots.push(root);
  const libDir = join(root, "usr/lib/x86_64-linux-gnu");
  for (const d of [libDir, join(root, "lib64"), join(root, "usr/local/bin"), join(root, "tmp"), join(root, "proc")]) mkdirSync(d, { recursive: true });
  chmodSync(join(root, "tmp"), 0o1777);
  symlinkSync("usr/lib", join(root, "lib"));
  const hostLib = (name: string) => {
    const p = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"].map((d) => join(d, name)).find(existsSync);
    if (!p) throw new Error(`${name} not found on this machine`);
    return realpathSync(p);
  };
  for (const name of DISTROLESS_CC) copyFileSync(hostLib(name), join(libDir, name));
  copyFileSync(hostLib("ld-linux-x86-64.so.2"), join(root, "lib64/ld-linux-x86-64.so.2"));
  for (const p of runtimeLibs()) if (base(p) !== leaveOut) copyFileSync(realpathSync(p), join(libDir, base(p)));
  copyFileSync(binary, join(root, "usr/local/bin/cdc-sink"));
  chmodSync(join(root, "usr/local/bin/cdc-sink"), 0o755);
  return root;
}
// chroot with its own /proc (Bun reads /proc/self/exe); as root, or as root of a user namespace
const asRoot = process.getuid?.() === 0 ? [] : ["--map-root-user"];
const canChroot = Bun.spawnSync(["unshare", ...asRoot, "--mount", "--pid", "--fork", "true"], { stderr: "pipe" }).exitCode === 0;
const inRoot = (root: string, args: string[]) =>
  Bun.spawnSync(["unshare", ...asRoot, "--mount", "--pid", "--fork", `--mount-proc=${root}/proc`, "chroot", root, "/usr/local/bin/cdc-sink", ...args], {
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", TMPDIR: "/tmp" },
    stdout: "pipe",
    stderr: "pipe",
  });

test.skipIf(!canChroot)(
  "the compiled binary runs in a root with only the distroless base and the libraries runtime-libs.sh lists",
  () => {
    // `bun run build`, into a directory of its own
    const out = mkdtempSync(join(tmpdir(), "cdc-sink-build-"));
    roots.push(out);
    const build = (JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")).scripts.build as string).split(/\s+/);
    expect(build.slice(0, 2)).toEqual(["bun", "build"]);
    const binary = join(out, "cdc-sink");
    const b = Bun.spawnSync([process.execPath, ...build.slice(1).map((a) => (a === "dist/cdc-sink" ? binary : a))], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(b.exitCode, b.stderr.toString()).toBe(0);

    const ok = inRoot(cleanRoot(binary), ["--version"]);
    expect(ok.exitCode, ok.stderr.toString()).toBe(0);
    expect(ok.stdout.toString()).toContain(`librdkafka ${librdkafkaVersion()}`);

    // the same root without one of the listed libraries: the test can tell
    const missing = inRoot(cleanRoot(binary, "libzstd.so.1"), ["--version"]);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr.toString()).toContain("libzstd.so.1");
  },
  120_000,
);

test("the Dockerfile builds librdkafka from source on bookworm, runs the compiled binary on distroless as non-root", () => {
  const d = readFileSync(`${ROOT}Dockerfile`, "utf8");
  expect(d).toMatch(/^FROM debian:bookworm\S* AS build$/m);
  expect(d).toMatch(/^FROM gcr\.io\/distroless\/cc-debian12\S*$/m);
  expect(d).not.toContain("librdkafka-dev");
  expect(d).toMatch(/^RUN native\/librdkafka\.sh$/m);
  expect(d).toMatch(/^RUN native\/build\.sh$/m);
  for (const pkg of ["libssl-dev", "zlib1g-dev", "libzstd-dev", "liblz4-dev", "libsasl2-dev"]) expect(d).toContain(pkg);
  expect(d).toContain("scripts/runtime-libs.sh native/build/cdc_kafka.node");
  expect(d).toMatch(/^COPY --from=build \/out\/lib\/ \/usr\/lib\/x86_64-linux-gnu\/$/m);
  expect(d).toMatch(/^RUN node_modules\/\.bin\/bun run build$/m);
  expect(d).toMatch(/^USER 65532:65532$/m);
  expect(d).toMatch(/^ENV TMPDIR=\/tmp$/m);
  expect(d).toMatch(/^EXPOSE 8080$/m);
  expect(d).toMatch(/^ENTRYPOINT \["\/usr\/local\/bin\/cdc-sink"\]$/m);
  const build = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")).scripts.build as string;
  expect(build).toContain("--compile");
  expect(build).toContain("--no-compile-autoload-dotenv");
  expect(build).toContain("--no-compile-autoload-bunfig");
  expect(build).toContain("--outfile dist/cdc-sink");
});
