// printable.cc: escaping and truncating caller-supplied text, and capping messages.
#include "core/printable.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace convserve {
namespace {

// The length of the unit starting at text[at] that a cut must keep whole: a
// backslash escape (\n, \", \x1b, \123), a UTF-8 character (by its lead
// byte), or one byte.
size_t UnitLength(absl::string_view text, size_t at) {
  const size_t left = text.size() - at;
  const unsigned char lead = static_cast<unsigned char>(text[at]);
  size_t length = 1;
  if (lead == '\\' && left >= 2) {
    length = 2;
    if (text[at + 1] == 'x') {
      while (length < 4 && length < left && absl::ascii_isxdigit(text[at + length])) ++length;
    } else if (text[at + 1] >= '0' && text[at + 1] <= '7') {
      while (length < 4 && length < left && text[at + length] >= '0' && text[at + length] <= '7') {
        ++length;
      }
    }
  } else if (lead >= 0xc0) {
    length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    // Only as far as the continuation bytes really go.
    size_t continued = 1;
    while (continued < length && continued < left &&
           (static_cast<unsigned char>(text[at + continued]) & 0xc0) == 0x80) {
      ++continued;
    }
    length = continued;
  }
  return length;
}

}  // namespace

std::string Printable(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, max_bytes)), "...(", text.size(), " bytes)");
}

std::string CapMessage(absl::string_view message, size_t max_bytes) {
  if (message.size() <= max_bytes) return std::string(message);
  const std::string mark = absl::StrCat("...(cut: ", message.size(), " bytes)");
  const size_t room = max_bytes > mark.size() ? max_bytes - mark.size() : 0;
  size_t kept = 0;
  while (kept < message.size()) {
    const size_t unit = UnitLength(message, kept);
    if (kept + unit > room) break;
    kept += unit;
  }
  return absl::StrCat(message.substr(0, kept), mark);
}

}  // namespace convserve
