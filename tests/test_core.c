/* test_core.c -- statuses, errors, version, contexts and backends. */
#include "clara_recon.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(status_table) {
  /* pinned numbers: they never change meaning */
  ck_assert_int_eq(CLARA_OK, 0);
  ck_assert_int_eq(CLARA_ERR_INVALID_ARG, -1);
  ck_assert_int_eq(CLARA_ERR_OUT_OF_MEMORY, -2);
  ck_assert_int_eq(CLARA_ERR_UNSUPPORTED, -3);
  ck_assert_int_eq(CLARA_ERR_NO_DEVICE, -4);
  ck_assert_int_eq(CLARA_ERR_DEVICE, -5);
  ck_assert_int_eq(CLARA_ERR_IO, -6);
  ck_assert_int_eq(CLARA_ERR_FORMAT, -7);
  ck_assert_int_eq(CLARA_ERR_CANCELLED, -8);
  ck_assert_str_eq(clara_status_name(CLARA_OK), "OK");
  ck_assert_str_eq(clara_status_name(CLARA_ERR_NO_DEVICE), "ERR_NO_DEVICE");
  ck_assert_str_eq(clara_status_name(CLARA_ERR_CANCELLED), "ERR_CANCELLED");
  ck_assert_str_eq(clara_status_name(-99), "UNKNOWN");
  ck_assert_str_eq(clara_status_name(5), "UNKNOWN");
  ck_assert_str_eq(clara_status_string(CLARA_ERR_IO), "input/output error");
  ck_assert_str_eq(clara_status_string(-99), "unknown status");
}
END_TEST

START_TEST(version) {
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", CLARA_RECON_VERSION_MAJOR,
           CLARA_RECON_VERSION_MINOR, CLARA_RECON_VERSION_PATCH);
  ck_assert_str_eq(clara_version(), buf);
  ck_assert_int_eq(clara_version_number(), CLARA_RECON_VERSION_NUMBER);
}
END_TEST

static void *fail_in_thread(void *arg) {
  clara_context *ctx = NULL;
  clara_context_options o;
  (void)arg;
  clara_context_options_init(&o);
  o.threads = -3;
  clara_context_create(&o, &ctx);
  return strstr(clara_last_error(), "threads") ? (void *)1 : NULL;
}

START_TEST(errors_are_per_thread) {
  pthread_t t;
  void *ok = NULL;
  clara_clear_error();
  ck_assert_str_eq(clara_last_error(), "");
  pthread_create(&t, NULL, fail_in_thread, NULL);
  pthread_join(t, &ok);
  ck_assert_ptr_nonnull(ok);
  /* the other thread's failure left this thread's message alone */
  ck_assert_str_eq(clara_last_error(), "");
}
END_TEST

START_TEST(contexts) {
  clara_context *ctx = (clara_context *)1;
  clara_context_options o;
  clara_backend b;
  ck_assert_int_eq(clara_context_create(NULL, NULL), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "out"));
  ck_assert_int_eq(clara_context_create(NULL, &ctx), CLARA_OK);
  ck_assert_int_ne(clara_context_backend(ctx), CLARA_BACKEND_AUTO);
  ck_assert_int_ge(clara_context_threads(ctx), 1);
  clara_context_destroy(ctx);
  clara_context_destroy(NULL);

  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = 3;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  ck_assert_int_eq(clara_context_backend(ctx), CLARA_BACKEND_CPU);
  ck_assert_int_eq(clara_context_threads(ctx), 3);
  clara_context_destroy(ctx);

  o.threads = -1;
  ctx = (clara_context *)1;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "got -1"));
  o.threads = 0;
  o.device = -2;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "opts->device"));
  o.device = 0;
  o.backend = (clara_backend)7;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "backend"));

  ck_assert_int_eq(clara_backend_parse("cuda", &b), CLARA_OK);
  ck_assert_int_eq(b, CLARA_BACKEND_CUDA);
  ck_assert_int_eq(clara_backend_parse("gpu", &b), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "\"gpu\""));
  ck_assert_str_eq(clara_backend_name(CLARA_BACKEND_CPU), "cpu");
  ck_assert_ptr_null(clara_backend_name((clara_backend)9));
}
END_TEST

/* Without a CUDA plugin that finds a device, cuda says why and auto falls
 * back to the CPU. The plugin is pointed at a path that does not exist, so
 * the test means the same on machines with and without a GPU. */
START_TEST(no_device) {
  clara_context *ctx = (clara_context *)1;
  clara_context_options o;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CUDA;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_ERR_NO_DEVICE);
  ck_assert_ptr_null(ctx);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "cuda"));
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "/nonexistent/plugin.so"));
  o.backend = CLARA_BACKEND_AUTO;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  ck_assert_int_eq(clara_context_backend(ctx), CLARA_BACKEND_CPU);
  clara_context_destroy(ctx);
}
END_TEST

START_TEST(free_null) { clara_free(NULL); }
END_TEST

int main(void) {
  Suite *s = suite_create("core");
  TCase *t = tcase_create("core");
  SRunner *sr;
  int failed;
  /* before any context loads (or fails to load) the plugin */
  setenv("CLARA_RECON_CUDA_PLUGIN", "/nonexistent/plugin.so", 1);
  tcase_add_test(t, status_table);
  tcase_add_test(t, version);
  tcase_add_test(t, errors_are_per_thread);
  tcase_add_test(t, contexts);
  tcase_add_test(t, no_device);
  tcase_add_test(t, free_null);
  suite_add_tcase(s, t);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
