#!/usr/bin/env bash
# Build a free-threaded CPython (PEP 703/779, --disable-gil) into the pyenv root as "<version>t",
# from Debian's python3.X *source* package (python.org is not reachable here; PyPI has no CPython
# builds; Debian bookworm has no 3.13): 3.13 from trixie (3.13.5), 3.14 from forky (testing; 3.14
# also brings concurrent.interpreters and InterpreterPoolExecutor). apt runs with a private sources
# list and state dir, so the system's apt configuration is not touched. Build dependencies: a C
# compiler, make, libssl-dev, zlib1g-dev, libffi-dev (present on this image).
#
#   benchmarks/build_free_threaded_python.sh          # 3.13 -> $(pyenv root)/versions/3.13.5t (~6 min, 2 cores)
#   benchmarks/build_free_threaded_python.sh 3.14     # 3.14 -> .../3.14.Nt
#   PREFIX=/opt/py313t JOBS=2 WORK=/tmp/aptsrc benchmarks/build_free_threaded_python.sh
#
# Then name it in a config's matrix.python as "3.13t" (or the prefix's bin/python3.13t); `conclab
# doctor` lists it. Used for issue 7's figures and configs/models.yaml.
set -euo pipefail
minor=${1:-3.13}
case "$minor" in
  3.13) suite=trixie ;;
  3.14) suite=forky ;;
  *) echo "usage: $0 [3.13|3.14]" >&2; exit 2 ;;
esac
work=${WORK:-/tmp/aptsrc-$minor}
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
mkdir -p "$work/lists/partial" "$work/archives/partial"
# The machine's own Debian mirror (the first URIs line of its deb822 sources), that suite's sources.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$work/sources.list"
opts=(-o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$work/lists" -o Dir::Cache::archives="$work/archives")
cd "$work"
apt-get "${opts[@]}" update
apt-get "${opts[@]}" source --download-only "python$minor"     # upstream tarball + its .asc signature
orig=$(ls "python${minor}"_*.orig.tar.xz | sort -V | tail -1)   # e.g. python3.13_3.13.5.orig.tar.xz
version=${orig#"python${minor}_"}
version=${version%.orig.tar.xz}
prefix=${PREFIX:-$root/versions/${version}t}
rm -rf "Python-$version"
tar xf "$orig"
cd "Python-$version"
./configure --prefix="$prefix" --disable-gil --with-ensurepip=install
make -j"${JOBS:-$(nproc)}"
make install
"$prefix/bin/python${minor}t" -c 'import sys, sysconfig; assert sysconfig.get_config_var("Py_GIL_DISABLED") and not sys._is_gil_enabled(); print(sys.version)'
echo "free-threaded Python $version in $prefix: name it in matrix.python as \"${minor}t\""
