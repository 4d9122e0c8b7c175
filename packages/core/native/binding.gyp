# Built only by `npm run setup:tensorflow` (scripts/setup-tensorflow.mjs): see quiet_stderr.c.
{
  'targets': [{
    'target_name': 'hpdl_quiet_stderr',
    'sources': ['quiet_stderr.c'],
    'defines': ['NAPI_VERSION=8'],
  }],
}
