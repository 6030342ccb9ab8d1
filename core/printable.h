// printable.h: caller-supplied text made safe to echo in a status or a log line.
#ifndef CONVSERVE_CORE_PRINTABLE_H_
#define CONVSERVE_CORE_PRINTABLE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace convserve {

// The longest caller-supplied text (a name, an ID) echoed whole.
inline constexpr size_t kMaxEchoedBytes = 128;

// `text` as C-style escapes (\n, \", \x1b, ...: every byte outside printable
// ASCII, and quotes and backslashes), so that it cannot forge a log line nor
// break out of quotes; at most `max_bytes` bytes of `text` are shown, then
// "...(N bytes)" with its full length.
std::string Printable(absl::string_view text, size_t max_bytes = kMaxEchoedBytes);

// `message` if it has at most `max_bytes` bytes; otherwise its longest prefix
// that, with the mark "...(cut: N bytes)" (N: the whole message's length)
// appended, fits in `max_bytes`. The cut never splits a UTF-8 character nor a
// backslash escape such as \n or \x1b (as Printable() writes them), so the
// prefix stays readable and escaped. The result may be shorter than
// `max_bytes` but never longer, unless `max_bytes` is below the mark's own
// length (then the mark alone).
std::string CapMessage(absl::string_view message, size_t max_bytes);

}  // namespace convserve

#endif  // CONVSERVE_CORE_PRINTABLE_H_
