#define _GNU_SOURCE
/* fuzz_files.c - scratch files for the harnesses that parse files (cache, config, identity). */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

/* Removed at exit, so neither libFuzzer runs nor unit tests leave anything behind. */
static void remove_tmpdir(void)
{
	fuzz_clean_tmpdir();
	rmdir(dir);
}

const char *fuzz_tmpdir(void)
{
	if (dir[0])
		return dir;
	/* tmpfs when there is one: the cache msyncs every update */
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/crust-fuzz-XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(remove_tmpdir);
	return dir;
}

int fuzz_write_file(const char *path, const uint8_t *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (n > 0) {
		ssize_t w = write(fd, data, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return w < 0 ? -errno : -EIO;
		}
		data += w;
		n -= (size_t)w;
	}
	close(fd);
	return 0;
}

void fuzz_clean_tmpdir(void)
{
	DIR *d = opendir(fuzz_tmpdir());
	if (!d)
		return;
	struct dirent *e;
	char path[PATH_MAX];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}
