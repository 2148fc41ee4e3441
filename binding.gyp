{
  "targets": [
    {
      "target_name": "vfio_user_native",
      "sources": [ "native/addon.cc" ],
      "include_dirs": [ "<!(node -p \"require('node-addon-api').include_dir\")" ],
      "defines": [ "NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED" ],
      "cflags_cc": [ "-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-O2" ],
      "cflags_cc!": [ "-fno-exceptions" ]
    }
  ]
}
