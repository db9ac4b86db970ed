// Whole-file reads and writes whose errors name the file: models, keys,
// certificates, sealed blobs, packages.
//
// Thread safety: stateless; two writers of one path race as files do.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/status.h"

namespace ppml {

// NotFound "<path>: no such file", or IoError "<path>: cannot open: <why>" /
// "<path>: read failed".
Result<std::string> ReadFile(const std::string& path);

// Creates or truncates `path` with `mode`, applied also when the file
// existed with looser permissions (keys are written 0600).
// IoError "<path>: cannot create|set the mode of|write|close: <why>".
Status WriteFile(const std::string& path, std::string_view data, mode_t mode = 0644);

}  // namespace ppml
