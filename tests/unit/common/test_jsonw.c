/* Unit tests for common/jsonw and common/base64. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/base64.h"
#include "common/jsonw.h"

Test(jsonw, nested_objects_and_arrays_get_commas)
{
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "a");
    jsonw_int(&w, -5);
    jsonw_key(&w, "b");
    jsonw_arr_begin(&w);
    jsonw_str(&w, "x");
    jsonw_bool(&w, true);
    jsonw_obj_begin(&w);
    jsonw_obj_end(&w);
    jsonw_null(&w);
    jsonw_arr_end(&w);
    jsonw_key(&w, "t");
    jsonw_timestamp_ms(&w, 1700000000123);
    jsonw_obj_end(&w);
    cr_assert_str_eq(buf_cstr(&b), "{\"a\":-5,\"b\":[\"x\",true,{},null],\"t\":1700000000.123}");
    buf_dispose(&b);
}

Test(jsonw, strings_are_escaped)
{
    buf_t b = BUF_INIT;
    json_escape_into(&b, "q\"b\\n\n\x01/\xc3\xa9", 10);
    cr_assert_str_eq(buf_cstr(&b), "\"q\\\"b\\\\n\\n\\u0001/\xc3\xa9\"");
    buf_dispose(&b);
}

Test(base64, round_trip_and_strictness)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        buf_t b = BUF_INIT;
        base64_encode_into(&b, plain[i], strlen(plain[i]));
        cr_assert_str_eq(buf_cstr(&b), coded[i]);
        unsigned char out[16];
        long n = base64_decode(coded[i], strlen(coded[i]), out);
        cr_assert_eq(n, (long)strlen(plain[i]));
        cr_assert(memcmp(out, plain[i], (size_t)n) == 0);
        buf_dispose(&b);
    }
    unsigned char out[16];
    cr_assert_eq(base64_decode("Zm9", 3, out), -1);
    cr_assert_eq(base64_decode("Zm9*", 4, out), -1);
    cr_assert_eq(base64_decode(" m9v", 4, out), -1);
    cr_assert_eq(base64_decode("Z=9v", 4, out), -1);
}
