/* test_fileio.c - p2p/fileio.c on its error paths. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p2p/fileio.h"

Test(fileio, writing_to_a_bad_descriptor_is_an_errno)
{
	cr_assert(eq(int, fio_write_all(-1, "x", 1), -EBADF));
}

Test(fileio, writing_into_a_closed_pipe_is_epipe)
{
	int p[2];
	cr_assert(zero(int, pipe(p)));
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	cr_assert(eq(int, fio_write_all(p[1], "abc", 3), -EPIPE));
	close(p[1]);
}

Test(fileio, writes_every_byte_of_a_buffer_larger_than_a_pipe)
{
	int p[2];
	cr_assert(zero(int, pipe2(p, O_NONBLOCK)));
	fcntl(p[1], F_SETFL, 0); /* blocking writer, nonblocking reader drained below */
	static char buf[1 << 20];
	memset(buf, 7, sizeof(buf));
	pid_t pid = fork();
	cr_assert(ge(int, pid, 0));
	if (pid == 0) {
		close(p[1]);
		fcntl(p[0], F_SETFL, 0);
		size_t got = 0;
		char r[65536];
		ssize_t n;
		while ((n = read(p[0], r, sizeof(r))) > 0)
			got += (size_t)n;
		_exit(got == sizeof(buf) ? 0 : 1);
	}
	close(p[0]);
	cr_assert(zero(int, fio_write_all(p[1], buf, sizeof(buf))));
	close(p[1]);
	int st;
	cr_assert(eq(int, waitpid(pid, &st, 0), pid));
	cr_assert(zero(int, WEXITSTATUS(st)), "the reader got every byte");
}

Test(fileio, syncing_the_directory_of_names_with_and_without_a_slash)
{
	cr_assert(zero(int, fio_sync_dir("just-a-name")), "the current directory");
	cr_assert(zero(int, fio_sync_dir("/etc-not-needed")), "the root");
	cr_assert(zero(int, fio_sync_dir("/tmp/some-file")));
}

Test(fileio, a_missing_directory_or_a_too_long_path_is_an_errno)
{
	cr_assert(eq(int, fio_sync_dir("/nonexistent-crust-dir/file"), -ENOENT));
	static char longp[PATH_MAX + 10];
	memset(longp, 'a', sizeof(longp) - 1);
	cr_assert(eq(int, fio_sync_dir(longp), -ENAMETOOLONG));
}
