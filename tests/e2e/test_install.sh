#!/usr/bin/env bash
# test_install.sh - `make install` produces a usable library:
#   1. PREFIX=$tmp/prefix: pkg-config finds crust; a C program built with
#      `pkg-config --cflags --libs crust` runs against the installed
#      libcrust.so (LD_LIBRARY_PATH), two services connect over 127.0.0.1
#      and exchange a message each way through crust_poll; the same
#      program also links statically with `pkg-config --static --libs`.
#   2. DESTDIR=$tmp/dest PREFIX=/usr: files land under DESTDIR, the .pc
#      names /usr (not DESTDIR), and the program builds and runs against
#      the staged copy through PKG_CONFIG_SYSROOT_DIR.
#   Both: SONAME libcrust.so.0, symlinks, only crust_* exported, the
#   installed crust binary runs. Then `make uninstall` removes the files.
# Env: BUILD (build dir, default build), CC (default cc).
# Compiler flags from pkg-config are meant to be split into words:
# shellcheck disable=SC2086,SC2046
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
CC=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crust-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# An ASan build's library needs the program built with the sanitizers too.
san_flags() {
	if readelf -d "$1" | grep -q 'libasan'; then
		echo "-fsanitize=address,undefined"
	fi
}

cat > "$tmp/prog.c" <<'EOF'
/* prog.c - two services over 127.0.0.1 with the installed libcrust. */
#define _POSIX_C_SOURCE 200809L
#include <crust.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 15000

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Poll svc until an event of type arrives (copied to *out); others are shown and dropped. */
static int wait_event(struct crust_service *svc, const char *who, enum crust_event_type type,
		      struct crust_event *out)
{
	long long deadline = now_ms() + WAIT_MS;
	while (now_ms() < deadline) {
		struct crust_event ev;
		int n = crust_poll(svc, &ev, 1, 100);
		if (n < 0) {
			fprintf(stderr, "%s: crust_poll: %s\n", who, crust_strerror(n));
			return -1;
		}
		if (n == 0)
			continue;
		printf("%s: %s%s%s\n", who, crust_event_name(ev.type), ev.reason[0] ? ": " : "",
		       ev.reason);
		if (ev.type == type) {
			*out = ev;
			return 0;
		}
		crust_msg_release(ev.msg);
	}
	fprintf(stderr, "%s: no %s within %d ms\n", who, crust_event_name(type), WAIT_MS);
	return -1;
}

static int expect_message(struct crust_service *svc, const char *who,
			  const struct crust_peer_id *from, const char *text)
{
	struct crust_event ev;
	if (wait_event(svc, who, CRUST_EV_NEW_MESSAGE, &ev))
		return -1;
	int bad = !crust_peer_eq(&ev.peer, from) || crust_msg_len(ev.msg) != strlen(text) ||
		  memcmp(crust_msg_data(ev.msg), text, strlen(text)) != 0;
	if (bad)
		fprintf(stderr, "%s: wrong message (%zu bytes)\n", who, crust_msg_len(ev.msg));
	else
		printf("%s: got \"%.*s\"\n", who, (int)crust_msg_len(ev.msg),
		       (const char *)crust_msg_data(ev.msg));
	crust_msg_release(ev.msg);
	return bad ? -1 : 0;
}

#define CHECK(x) do { int r_ = (x); if (r_ < 0) { \
	fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, crust_strerror(r_)); \
	goto out; } } while (0)

int main(void)
{
	struct crust_service *a = NULL, *b = NULL;
	int status = 1;
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.shards = 1;
	cfg.pin_shards = false;
	cfg.bind_addr = "127.0.0.1";
	cfg.tcp_port = 0;
	CHECK(crust_service_new(&cfg, &a));
	CHECK(crust_service_new(&cfg, &b));
	struct crust_peer_id ida, idb;
	crust_own_id(a, &ida);
	crust_own_id(b, &idb);
	if (crust_peer_eq(&ida, &idb)) {
		fprintf(stderr, "two services share an id\n");
		goto out;
	}

	CHECK(crust_start_listening(a));
	struct crust_event ev;
	CHECK(wait_event(a, "a", CRUST_EV_LISTENER_STARTED, &ev));
	if (ev.port == 0) {
		fprintf(stderr, "listener_started without a port\n");
		goto out;
	}
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ev.port);
	struct crust_endpoint ep;
	CHECK(crust_endpoint_parse(addr, &ep));
	CHECK(crust_connect(b, &ep));
	CHECK(wait_event(b, "b", CRUST_EV_NEW_CONNECTION, &ev));
	if (!crust_peer_eq(&ev.peer, &ida)) {
		fprintf(stderr, "b connected to someone else\n");
		goto out;
	}
	CHECK(wait_event(a, "a", CRUST_EV_NEW_CONNECTION, &ev));
	if (!crust_peer_eq(&ev.peer, &idb)) {
		fprintf(stderr, "a accepted someone else\n");
		goto out;
	}

	const char *ping = "hello from the installed libcrust";
	const char *pong = "and back again";
	CHECK(crust_send(b, &ida, ping, strlen(ping), 0));
	CHECK(expect_message(a, "a", &idb, ping));
	CHECK(crust_send(a, &idb, pong, strlen(pong), 0));
	CHECK(expect_message(b, "b", &ida, pong));

	struct crust_peer_id peers[4];
	int np = crust_peers(a, peers, 4);
	if (np != 1 || !crust_peer_eq(&peers[0], &idb)) {
		fprintf(stderr, "a's peers: %d\n", np);
		goto out;
	}
	printf("ok\n");
	status = 0;
out:
	crust_service_free(b);
	crust_service_free(a);
	return status;
}
EOF

# build_and_run NAME PCPATH SYSROOT LIBDIR
build_and_run() {
	local name=$1 pcpath=$2 sysroot=$3 libdir=$4
	local pc=(env PKG_CONFIG_PATH="$pcpath" PKG_CONFIG_SYSROOT_DIR="$sysroot" pkg-config)
	"${pc[@]}" --exists crust || fail "$name: pkg-config does not find crust in $pcpath"
	local cflags libs
	cflags=$("${pc[@]}" --cflags crust)
	libs=$("${pc[@]}" --libs crust)
	echo "$name: pkg-config --cflags --libs crust: $cflags $libs"
	local san
	san=$(san_flags "$libdir/libcrust.so")
	# the public header must compile cleanly on its own
	"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $san $cflags -o "$tmp/$name-prog" \
		"$tmp/prog.c" $libs || fail "$name: cannot build the program against the installed copy"
	readelf -d "$tmp/$name-prog" | grep -q 'NEEDED.*\[libcrust\.so\.0\]' ||
		fail "$name: the program does not depend on libcrust.so.0"
	local resolved
	resolved=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/$name-prog" | awk '/libcrust/ {print $3}')
	[ "$(readlink -f "$resolved")" = "$(readlink -f "$libdir/libcrust.so.0")" ] ||
		fail "$name: libcrust resolves to '$resolved', not the installed $libdir/libcrust.so.0"
	ok "$name: the program loads $resolved"
	LD_LIBRARY_PATH="$libdir" timeout 60 "$tmp/$name-prog" ||
		fail "$name: the program failed (status $?)"
	ok "$name: two services exchanged messages through the installed libcrust.so"
}

check_lib() {
	local name=$1 libdir=$2
	for f in libcrust.a libcrust.so libcrust.so.0 libcrust.so.0.1.0 pkgconfig/crust.pc; do
		[ -e "$libdir/$f" ] || fail "$name: $libdir/$f is missing"
	done
	[ "$(readlink "$libdir/libcrust.so.0")" = libcrust.so.0.1.0 ] ||
		fail "$name: libcrust.so.0 -> $(readlink "$libdir/libcrust.so.0")"
	[ "$(readlink "$libdir/libcrust.so")" = libcrust.so.0.1.0 ] ||
		fail "$name: libcrust.so -> $(readlink "$libdir/libcrust.so")"
	local soname
	soname=$(readelf -d "$libdir/libcrust.so.0.1.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
	[ "$soname" = libcrust.so.0 ] || fail "$name: SONAME is '$soname', want libcrust.so.0"
	ok "$name: SONAME libcrust.so.0"
	local extra
	extra=$(nm -D --defined-only "$libdir/libcrust.so.0.1.0" | awk '$3 !~ /^crust_/ && $2 ~ /[TDBRVW]/ {print $3}' |
		grep -v '^_\(init\|fini\|edata\|end\|_bss_start\)$' || true)
	[ -z "$extra" ] || fail "$name: libcrust.so exports non-crust_ symbols: $(echo $extra | head -c 300)"
	ok "$name: libcrust.so exports only crust_* symbols"
}

cd "$ROOT" || exit 1

# --- 1. PREFIX=$tmp/prefix ---------------------------------------------------
prefix=$tmp/prefix
make --no-print-directory -C "$ROOT" install BUILD="$BUILD" PREFIX="$prefix" > "$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "make install PREFIX=$prefix failed"; }
ok "make install PREFIX=$prefix"
[ -f "$prefix/include/crust.h" ] || fail "prefix: include/crust.h is missing"
check_lib prefix "$prefix/lib"
grep -qx "prefix=$prefix" "$prefix/lib/pkgconfig/crust.pc" || fail "prefix: crust.pc does not say prefix=$prefix"
build_and_run prefix "$prefix/lib/pkgconfig" "" "$prefix/lib"

# the static library links with --static flags (Requires.private/Libs.private)
san=$(san_flags "$prefix/lib/libcrust.so")
static_libs=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --static --libs crust | sed 's/-lcrust\b//')
"$CC" -std=c11 $san $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags crust) \
	-o "$tmp/prog-static" "$tmp/prog.c" "$prefix/lib/libcrust.a" $static_libs ||
	fail "static: cannot link with libcrust.a and pkg-config --static --libs ($static_libs)"
readelf -d "$tmp/prog-static" | grep -q 'libcrust' && fail "static: the program still needs libcrust.so"
timeout 60 "$tmp/prog-static" > "$tmp/static.out" || { cat "$tmp/static.out"; fail "static: the program failed"; }
ok "static: linked with libcrust.a and pkg-config --static --libs, ran"

"$prefix/bin/crust" help > /dev/null || fail "the installed crust binary does not run"
"$prefix/bin/crust" node --help | grep -q 'usage: crust node' || fail "crust node --help"
ok "the installed crust binary runs"

make --no-print-directory -C "$ROOT" uninstall BUILD="$BUILD" PREFIX="$prefix" > "$tmp/uninstall.log" 2>&1 ||
	{ cat "$tmp/uninstall.log"; fail "make uninstall failed"; }
left=$(find "$prefix" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
ok "make uninstall removed every installed file"

# --- 2. DESTDIR=$tmp/dest PREFIX=/usr ----------------------------------------
dest=$tmp/dest
make --no-print-directory -C "$ROOT" install BUILD="$BUILD" DESTDIR="$dest" PREFIX=/usr > "$tmp/install2.log" 2>&1 ||
	{ cat "$tmp/install2.log"; fail "make install DESTDIR=$dest PREFIX=/usr failed"; }
ok "make install DESTDIR=$dest PREFIX=/usr"
if [ ! -f "$dest/usr/include/crust.h" ] || [ ! -x "$dest/usr/bin/crust" ]; then
	fail "destdir: files missing under $dest/usr"
fi
check_lib destdir "$dest/usr/lib"
grep -q "$dest" "$dest/usr/lib/pkgconfig/crust.pc" && fail "destdir: crust.pc mentions DESTDIR"
grep -qx "prefix=/usr" "$dest/usr/lib/pkgconfig/crust.pc" || fail "destdir: crust.pc does not say prefix=/usr"
ok "destdir: crust.pc names /usr, not DESTDIR"
build_and_run destdir "$dest/usr/lib/pkgconfig" "$dest" "$dest/usr/lib"

echo "test_install.sh: all checks passed"
