/* The layer's URLs (layer_endpoint_parse): redis://, unix:// and redis+sentinel://, good and bad,
 * and that no password reaches a description or an error message. */
#include "common/redis_layout.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void good(const char *url, const char *desc)
{
	struct layer_endpoint e = {0};
	char err[512] = "";
	int rc = layer_endpoint_parse(&e, url, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc == 0)
		CHECK_STR(e.desc, desc);
	else
		fprintf(stderr, "  %s: %s\n", url, err);
	layer_endpoint_fini(&e);
}

static void bad(const char *url, const char *why)
{
	struct layer_endpoint e = {0};
	char err[512] = "";
	CHECK_EQ(layer_endpoint_parse(&e, url, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "bad layer URL") != NULL);
	if (why && !strstr(err, why))
		fprintf(stderr, "  %s: \"%s\" lacks \"%s\"\n", url, err, why);
	CHECK(!why || strstr(err, why) != NULL);
	CHECK(strstr(err, "s3cret") == NULL);
	CHECK(e.desc == NULL && e.sentinels == NULL && e.password == NULL);
}

int main(void)
{
	good("redis://127.0.0.1", "redis://127.0.0.1:6379/0");
	good("redis://h:7000/3", "redis://h:7000/3");
	good("redis://:s3cret@h:7000/", "redis://h:7000/0");
	good("redis://[::1]:7000/2", "redis://[::1]:7000/2");
	good("unix:///run/redis.sock?db=4", "unix:///run/redis.sock?db=4");
	bad("redis://h:0/", NULL);
	bad("redis://h:70000", NULL);
	bad("redis://:s3cret@/1", NULL);
	bad("redis://h/x", NULL);
	bad("http://h", NULL);

	/* Sentinel shards. */
	struct layer_endpoint e = {0};
	char err[512];
	CHECK_EQ(layer_endpoint_parse(&e,
				      "redis+sentinel://app:s3cret@10.0.0.1,10.0.0.2:26380,[::1]/"
				      "shard-a?db=2&sentinel_user=mon&sentinel_password=s3cret",
				      err, sizeof(err)),
		 0);
	CHECK_STR(e.desc, "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,[::1]:26379/shard-a?db=2");
	CHECK_EQ(e.nsentinels, 3);
	if (e.nsentinels == 3) {
		CHECK_STR(e.sentinels[0].host, "10.0.0.1");
		CHECK_EQ(e.sentinels[0].port, 26379);
		CHECK_STR(e.sentinels[1].host, "10.0.0.2");
		CHECK_EQ(e.sentinels[1].port, 26380);
		CHECK_STR(e.sentinels[2].host, "::1");
	}
	CHECK_STR(e.master_name, "shard-a");
	CHECK_STR(e.user, "app");
	CHECK_STR(e.password, "s3cret");
	CHECK_STR(e.sentinel_user, "mon");
	CHECK_STR(e.sentinel_password, "s3cret");
	CHECK_EQ(e.db, 2);
	CHECK(e.host == NULL && e.path == NULL);
	layer_endpoint_fini(&e);
	good("redis+sentinel://s1/mymaster", "redis+sentinel://s1:26379/mymaster");
	/* A password may hold '@': the userinfo ends at the last one before the hosts. */
	CHECK_EQ(layer_endpoint_parse(&e, "redis+sentinel://u:p@ss@s1,s2/m", err, sizeof(err)), 0);
	CHECK_STR(e.password, "p@ss");
	CHECK_EQ(e.nsentinels, 2);
	layer_endpoint_fini(&e);

	bad("redis+sentinel://s1:26379", "no /MASTER_NAME");
	bad("redis+sentinel:///mymaster", "no sentinel address");
	bad("redis+sentinel://s1,/mymaster", "empty sentinel address");
	bad("redis+sentinel://s1:0/mymaster", "bad sentinel address");
	bad("redis+sentinel://s1/", "bad master name");
	bad("redis+sentinel://s1/my master", "bad master name");
	bad("redis+sentinel://s1/m?db=x", "bad db");
	bad("redis+sentinel://s1/m?sentinel_password=s3cret&sentinel_password=s3cret",
	    "repeated parameter");
	bad("redis+sentinel://s1/m?password=s3cret", "unknown");
	bad("redis+sentinel://s1/m?sentinel_user=u", "sentinel_user without");
	bad("redis+sentinel://nocolon@s1/m", "[user]:password@");
	bad("redis+sentinel://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q/m", "more than 16");
	return test_done();
}
