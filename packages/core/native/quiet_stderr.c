// Redirects this process's standard error to /dev/null and back.
//
// TensorFlow's shared library logs a few lines from its static initialisers, while it is being
// loaded, before any setting made afterwards can take effect (TF_CPP_MIN_LOG_LEVEL is honoured only
// by later messages). Node.js has no dup2, so loading the library quietly needs these two calls.
#include <fcntl.h>
#include <node_api.h>
#include <unistd.h>

// silence(): points fd 2 at /dev/null; returns a descriptor of the old stderr (-1 on failure).
static napi_value Silence(napi_env env, napi_callback_info info) {
  (void)info;
  int saved = dup(2);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (saved >= 0 && null >= 0) dup2(null, 2);
  if (null >= 0) close(null);
  napi_value out;
  napi_create_int32(env, saved, &out);
  return out;
}

// restore(fd): points fd 2 back at the descriptor silence() returned, and closes that descriptor.
static napi_value Restore(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int saved = -1;
  if (argc == 1) napi_get_value_int32(env, argv[0], &saved);
  if (saved >= 0) {
    dup2(saved, 2);
    close(saved);
  }
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"silence", NULL, Silence, NULL, NULL, NULL, napi_default, NULL},
      {"restore", NULL, Restore, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
