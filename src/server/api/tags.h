/* api/tags: tag validation shared by CreateStream and the tagging operations. */
#ifndef EDDY_SERVER_API_TAGS_H
#define EDDY_SERVER_API_TAGS_H

#include "server/api/api.h"

#define TAGS_PER_STREAM_MAX 50

typedef struct tag_list {
    tag_t *items; /* views into the request JSON; valid while the call lives */
    size_t count;
} tag_list_t;

/* Reads a Tags map (may be NULL: empty list) and checks the characters the service allows. Replies with
 * InvalidArgumentException and returns false when a tag is not allowed. */
bool tags_from_input(api_call_t *c, const cJSON *map, tag_list_t *out);
void tags_dispose(tag_list_t *list);

/* Resolves the ResourceARN member to a stream (*con NULL) or to a consumer of it; NULL after replying
 * ResourceNotFoundException. (Also used by the resource-policy operations.) */
stream_t *api_resource(api_call_t *c, consumer_t **con);

#endif
