/* Which Redis error replies are outages (layer_error_kind), and the rate-limited log line. */
#include "common/layer.h"
#include "common/redis_layout.h"
#include "common/log.h"
#include "tests/lib/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	/* Exactly as Redis 7.0 says them. */
	CHECK_EQ(layer_error_kind("READONLY You can't write against a read only replica."),
		 LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("READONLY You can't write against a read only replica. script: "
				  "ea8f, on @user_script:14."),
		 LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("LOADING Redis is loading the dataset in memory"),
		 LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("UNBLOCKED force unblock from blocking operation, instance state "
				  "changed (master -> replica?)"),
		 LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("OOM command not allowed when used memory > 'maxmemory'."),
		 LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
				  "is set to 'no'."),
		 LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("BUSY Redis is busy running a script."), LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("ERR max number of clients reached"), LAYER_ERR_OUTAGE);
	CHECK_EQ(layer_error_kind("NOAUTH Authentication required."), LAYER_ERR_DENIED);
	CHECK_EQ(layer_error_kind("WRONGPASS invalid username-password pair or user is disabled."),
		 LAYER_ERR_DENIED);
	CHECK_EQ(layer_error_kind("NOPERM this user has no permissions to run the 'blpop' command"),
		 LAYER_ERR_DENIED);
	CHECK_EQ(layer_error_kind("ERR The user executing the script can't run this command or "
				  "subcommand script: 1f2e, on @user_script:1."),
		 LAYER_ERR_DENIED);
	CHECK_EQ(layer_error_kind("ERR AUTH <password> called without any password configured for "
				  "the default user. Are you sure your configuration is correct?"),
		 LAYER_ERR_DENIED);
	/* About one command: not an outage. */
	CHECK_EQ(layer_error_kind("ERR wrong number of arguments for 'blpop' command"),
		 LAYER_ERR_OTHER);
	CHECK_EQ(layer_error_kind("full"), LAYER_ERR_OTHER);
	CHECK_EQ(layer_error_kind("NOSCRIPT No matching script. Please use EVAL."), LAYER_ERR_OTHER);
	CHECK_EQ(layer_error_kind("READONLYX"), LAYER_ERR_OTHER);
	CHECK_EQ(layer_error_kind(NULL), LAYER_ERR_OTHER);

	/* log_limited: 1,000 lines from one call site in a burst write one line; the next one
	 * after the interval says how many were held back. */
	char path[] = "/tmp/laurel-test-outage-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	log_level = LOG_WARN;
	struct log_limit lim = {0};
	for (int i = 0; i < 1000; i++)
		log_write_limited(&lim, LOG_WARN, "conn %d: something", i);
	lim.next_ms = 0; /* the interval is over */
	log_write_limited(&lim, LOG_WARN, "conn %d: something", 1000);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char text[4096] = {0};
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	unlink(path);
	CHECK(n > 0);
	int lines = 0;
	for (char *p = text; *p; p++)
		lines += *p == '\n';
	CHECK_EQ(lines, 2);
	CHECK(strstr(text, "conn 0: something\n") != NULL);
	CHECK(strstr(text, "conn 1000: something (and 999 more like it in the last 10 s)") != NULL);
	return test_done();
}
