#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (PEP 703, --disable-gil) into the pyenv root as "3.13.5t",
# from Debian trixie's python3.13 *source* package (python.org is not reachable here; PyPI has no
# CPython builds; Debian bookworm has no 3.13). Uses apt with a private sources list/state dir, so
# the system's apt configuration is not touched. ~6 min on 2 cores. Used for issue 7's figures.
set -euo pipefail
work=${WORK:-/tmp/aptsrc}
prefix=${PREFIX:-$(pyenv root)/versions/3.13.5t}
mkdir -p "$work/lists/partial" "$work/archives/partial"
# The machine's own Debian mirror (the first URIs line of its deb822 sources), trixie's sources.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$work/sources.list"
opts=(-o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$work/lists" -o Dir::Cache::archives="$work/archives")
cd "$work"
apt-get "${opts[@]}" update
apt-get "${opts[@]}" source --download-only python3.13     # upstream tarball + its .asc signature
tar xf python3.13_3.13.5.orig.tar.xz
cd Python-3.13.5
./configure --prefix="$prefix" --disable-gil --with-ensurepip=install
make -j"$(nproc)"
make install
"$prefix/bin/python3.13t" -c 'import sys, sysconfig; assert sysconfig.get_config_var("Py_GIL_DISABLED") and not sys._is_gil_enabled(); print(sys.version)'
