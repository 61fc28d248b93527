// No Docker engine runs here: check that the image gets every shared library the addon links.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ROOT } from "./support/harness.ts";

const run = (cmd: string[]) => {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return r.stdout.toString();
};
const DISTROLESS_CC = new Set(["linux-vdso.so.1", "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libstdc++.so.6"]);

test("every library ldd lists for the addon is in the distroless base or copied by the Dockerfile", () => {
  const addon = `${ROOT}native/build/cdc_kafka.node`;
  const linked = run(["ldd", addon])
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0]!)
    .filter(Boolean)
    .map((n) => n.replace(/^.*\//, ""));
  const copied = new Set(run(["bash", `${ROOT}scripts/runtime-libs.sh`, addon]).split("\n").filter(Boolean).map((p) => p.replace(/^.*\//, "")));
  expect(linked).toContain("librdkafka.so.1");
  expect(copied.has("librdkafka.so.1")).toBe(true);
  for (const lib of linked) expect(DISTROLESS_CC.has(lib) || copied.has(lib)).toBe(true);
  for (const lib of copied) expect(DISTROLESS_CC.has(lib)).toBe(false);
});

test("the Dockerfile builds on bookworm, runs the compiled binary on distroless as non-root", () => {
  const d = readFileSync(`${ROOT}Dockerfile`, "utf8");
  expect(d).toMatch(/^FROM debian:bookworm\S* AS build$/m);
  expect(d).toMatch(/^FROM gcr\.io\/distroless\/cc-debian12\S*$/m);
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
