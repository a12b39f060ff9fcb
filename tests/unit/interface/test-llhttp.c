/* Checks that the llhttp sources compiled into the build parse a request, whole and byte by byte
 * (the interface's HTTP module is built on them). */
#include <llhttp.h>

#include "tests/lib/test.h"

static char url[256];
static size_t urllen;
static int complete;

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	if (urllen + len < sizeof(url)) {
		memcpy(url + urllen, at, len);
		urllen += len;
	}
	return 0;
}

static int on_complete(llhttp_t *p)
{
	complete++;
	return 0;
}

static void parse(const char *req, size_t step)
{
	llhttp_settings_t s;
	llhttp_t p;
	llhttp_settings_init(&s);
	s.on_url = on_url;
	s.on_message_complete = on_complete;
	llhttp_init(&p, HTTP_REQUEST, &s);
	urllen = 0;
	complete = 0;
	size_t n = strlen(req);
	for (size_t i = 0; i < n; i += step) {
		size_t k = n - i < step ? n - i : step;
		CHECK_EQ(llhttp_execute(&p, req + i, k), HPE_OK);
	}
	url[urllen] = '\0';
	CHECK_STR(url, "/hello?x=1");
	CHECK_EQ(complete, 1);
	CHECK_EQ(llhttp_get_method(&p), HTTP_POST);
}

int main(void)
{
	const char *req = "POST /hello?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
	parse(req, strlen(req));
	parse(req, 1);
	return test_done();
}
