/* error.c -- status names and the per-thread error message. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CLARA_MSG_MAX 1024

static _Thread_local char tls_message[CLARA_MSG_MAX];

CLARA_API const char *clara_status_name(int status) {
  switch (status) {
#define CLARA_STATUS_NAME_(name, value, text)                                  \
  case value:                                                                  \
    return #name;
    CLARA_STATUS_MAP(CLARA_STATUS_NAME_)
#undef CLARA_STATUS_NAME_
  default:
    return "UNKNOWN";
  }
}

CLARA_API const char *clara_status_string(int status) {
  switch (status) {
#define CLARA_STATUS_TEXT_(name, value, text)                                  \
  case value:                                                                  \
    return text;
    CLARA_STATUS_MAP(CLARA_STATUS_TEXT_)
#undef CLARA_STATUS_TEXT_
  default:
    return "unknown status";
  }
}

CLARA_API const char *clara_last_error(void) { return tls_message; }

CLARA_API void clara_clear_error(void) { tls_message[0] = '\0'; }

clara_status clara_fail(clara_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_message, sizeof tls_message, fmt, ap);
  va_end(ap);
  return status;
}

clara_status clara_fail_context(clara_status status, const char *prefix) {
  size_t pl = strnlen(prefix, CLARA_MSG_MAX / 2);
  size_t ml = strnlen(tls_message, CLARA_MSG_MAX - 1);
  if (pl + 2 + ml > CLARA_MSG_MAX - 1)
    ml = CLARA_MSG_MAX - 1 - pl - 2; /* keep the prefix, cut the tail */
  memmove(tls_message + pl + 2, tls_message, ml);
  memcpy(tls_message, prefix, pl);
  tls_message[pl] = ':';
  tls_message[pl + 1] = ' ';
  tls_message[pl + 2 + ml] = '\0';
  return status;
}
