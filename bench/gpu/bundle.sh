#!/usr/bin/env bash
# Run HERE (the CPU machine, from anywhere): builds the project and collects what a GPU run needs
# into the ignored folder .gpu/ at the repository root:
#   .gpu/jre.tgz   a Java 25 runtime (the GPU machine has no Java), from the shared make-jre.sh
#   .gpu/lib/      moeyard-bench.jar + its runtime dependencies, without OR-Tools and protobuf
#   .gpu/native-test/  the native module's classes, test classes and JUnit (io.moeyard.cuda.GpuTestMain)
#   .gpu/data/law.npy  one ESFT routing trace (the bench on measured routing)
# Then, on the GPU machine, from the repository root: bash bench/gpu/run.sh
# Env: JAVA_HOME (default temurin 25), MOEYARD_SHARED (folder holding device/make-jre.sh; default
# ../shared next to the repository root, then /work/shared), MVN_FLAGS (default -o: offline).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
limit_mib=64

shared=""
for s in "${MOEYARD_SHARED:-}" "$root/../shared" /work/shared; do
  if [ -n "$s" ] && [ -f "$s/device/make-jre.sh" ]; then shared=$(cd "$s" && pwd); break; fi
done
[ -n "$shared" ] || { echo "bundle: cannot find device/make-jre.sh (set MOEYARD_SHARED to the shared folder)" >&2; exit 2; }

echo "bundle: building (./mvnw -q -DskipTests package ${MVN_FLAGS--o})..."
# The JUnit jars the native module's tests need are copied in the same reactor build: a separate
# "-pl native dependency:copy-dependencies" cannot resolve the sibling modules unless they were
# installed into the local repository.
testlib=$root/target/gpu-test-lib
rm -rf "$testlib"
# shellcheck disable=SC2086
./mvnw -B -q ${MVN_FLAGS--o} -DskipTests package dependency:copy-dependencies -DincludeScope=test \
  -DincludeGroupIds=org.junit.jupiter,org.junit.platform,org.opentest4j,org.apiguardian,org.jspecify \
  -DoutputDirectory="$testlib"

jar=bench/target/moeyard-bench.jar
[ -f "$jar" ] || { echo "bundle: $jar missing after the build" >&2; exit 1; }
native_jar=$(ls bench/target/lib/moeyard-native-*.jar 2>/dev/null | head -1)
listing=$([ -n "$native_jar" ] && unzip -l "$native_jar" 2>/dev/null || true)
if ! grep -q 'native/linux-x86_64/libmoeyard_cuda.so' <<<"$listing"; then
  echo "bundle: the native jar holds no libmoeyard_cuda.so (was nvcc found? see native/README.md)" >&2
  exit 1
fi

# Our own modules' jars come from their target folders: bench/target/lib can hold copies resolved
# from the local repository (~/.m2, after an earlier "mvn install") rather than this build's.
for j in bench/target/lib/moeyard-*.jar; do
  m=$(basename "$j" | sed -E 's/^moeyard-(.*)-[0-9][^-]*(-SNAPSHOT)?\.jar$/\1/')
  fresh=$m/target/$(basename "$j")
  [ -f "$fresh" ] && cp "$fresh" "$j"
done
# the bundled native jar must hold the library this build made (a stale copy in bench/target/lib
# once sent old kernels to a GPU run)
so=native/target/classes/native/linux-x86_64/libmoeyard_cuda.so
if ! unzip -p "$native_jar" native/linux-x86_64/libmoeyard_cuda.so | cmp -s - "$so"; then
  echo "bundle: $native_jar does not hold the freshly built $so" >&2
  exit 1
fi
rm -rf .gpu
mkdir -p .gpu/lib
bash "$shared/device/make-jre.sh" .gpu jdk.zipfs   # zipfs: JUnit scans test jars (GpuTestMain)
cp "$jar" .gpu/lib/
for f in bench/target/lib/*.jar; do
  case "$(basename "$f")" in
    ortools-*|protobuf-*) ;;
    *) cp "$f" .gpu/lib/ ;;
  esac
done
# the native module's tests, runnable without Maven (io.moeyard.cuda.GpuTestMain): its classes and
# test classes as folders (AvailabilityTest copies class files out of the class folder) + JUnit
mkdir -p .gpu/native-test/lib
cp -r native/target/classes .gpu/native-test/classes
cp -r native/target/test-classes .gpu/native-test/test-classes
cp "$testlib"/*.jar .gpu/native-test/lib/
# one measured routing trace (ESFT law) for the bench on real routing
if [ -f "$shared/data/esft/law.npy" ]; then
  mkdir -p .gpu/data
  cp "$shared/data/esft/law.npy" .gpu/data/
fi
git rev-parse HEAD > .gpu/commit 2>/dev/null || true
git status --porcelain --untracked-files=no | grep -q . && echo dirty >> .gpu/commit || true

kib=$(du -sk .gpu | cut -f1)
repo_kib=$(( $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) / 1024 ))
total=$(( kib + repo_kib ))
printf 'bundle: .gpu/ is %.1f MiB (%s jars, %s test jars, jre.tgz); with the tracked files %.1f MiB of the %d MiB a GPU run may carry\n' \
  "$(awk "BEGIN{print $kib/1024}")" "$(ls .gpu/lib | wc -l)" "$(ls .gpu/native-test/lib | wc -l)" \
  "$(awk "BEGIN{print $total/1024}")" "$limit_mib"
if [ "$total" -ge $((limit_mib * 1024)) ]; then
  echo "bundle: over the $limit_mib MiB a GPU run may carry" >&2
  exit 1
fi
echo "bundle: next, on the GPU machine from the repository root: bash bench/gpu/run.sh"
