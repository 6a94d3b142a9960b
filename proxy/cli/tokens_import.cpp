// `wkproxy tokens import` and `tokens remove`: the command line around the pure steps (reading
// the details is aws/certificate_details, rewriting a config is config/yaml_rewrite).

#include "cli/tokens_import.hpp"

#include "aws/fetch.hpp"

#include "cli_help.hpp"

#include "core/ascii.hpp"

#include "config/env_subst.hpp"
#include "config/upstream_url.hpp"
#include "config/yaml_rewrite.hpp"
#include "routing/host_match.hpp"

#include <boost/algorithm/string/join.hpp>
#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <utility>

namespace wk::cli {

namespace json = boost::json;
namespace pt = boost::property_tree;
namespace fs = std::filesystem;

using aws::count_of;

namespace {

// ---------------------------------------------------------------------------------------------
// The command line

// The text lives in docs/wkproxy.1.md, with the man page; errors repeat its first line.
constexpr std::string_view import_usage = wk::cli::help_tokens_import;
constexpr std::string_view usage_line = import_usage.substr(0, import_usage.find('\n') + 1);

struct options {
  std::string input;
  std::optional<std::string> write;  // --write CONFIG
  std::string prefix{default_token_prefix};
  std::string tenant;                     // --tenant ID
  std::optional<std::string> tokens_dir;  // --tokens-dir DIR
};

// A tenant id as given on the command line: printable ASCII without spaces or quotes (ids,
// names and ARNs of distribution tenants are).
bool valid_tenant(std::string_view id) {
  return !id.empty() && id.size() <= 2048 && std::all_of(id.begin(), id.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '"' && c != '\\';
  });
}

// std::nullopt: exit with `code`.
std::optional<options> parse_args(int argc, char** argv, int& code) {
  options opt;
  bool have_input = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view name, std::string& out) {
      if (a.size() > name.size() && a.starts_with(name) && a[name.size()] == '=') {
        out = std::string(a.substr(name.size() + 1));
        return true;
      }
      if (i + 1 >= argc) {
        std::cerr << "wkproxy: " << name << " needs a value\n" << usage_line;
        code = 2;
        return false;
      }
      out = argv[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::cout << import_usage;
      code = 0;
      return std::nullopt;
    }
    if (a == "--write" || a.starts_with("--write=")) {
      std::string path;
      if (!value("--write", path)) {
        return std::nullopt;
      }
      if (path.empty() || path == "-") {
        std::cerr << "wkproxy: --write needs a file name\n" << usage_line;
        code = 2;
        return std::nullopt;
      }
      opt.write = std::move(path);
    } else if (a == "--prefix" || a.starts_with("--prefix=")) {
      if (!value("--prefix", opt.prefix)) {
        return std::nullopt;
      }
    } else if (a == "--tokens-dir" || a.starts_with("--tokens-dir=")) {
      std::string dir;
      if (!value("--tokens-dir", dir)) {
        return std::nullopt;
      }
      if (dir.empty()) {
        std::cerr << "wkproxy: --tokens-dir needs a directory\n" << usage_line;
        code = 2;
        return std::nullopt;
      }
      opt.tokens_dir = std::move(dir);
    } else if (a == "--tenant" || a.starts_with("--tenant=")) {
      if (!value("--tenant", opt.tenant)) {
        return std::nullopt;
      }
      if (!valid_tenant(opt.tenant)) {
        std::cerr << "wkproxy: --tenant needs a tenant id, name or ARN (no spaces or quotes)\n"
                  << usage_line;
        code = 2;
        return std::nullopt;
      }
    } else if (a.size() > 1 && a.front() == '-') {
      std::cerr << "wkproxy: unknown option " << a << "\n" << usage_line;
      code = 2;
      return std::nullopt;
    } else if (have_input) {
      std::cerr << "wkproxy: only one input file, got " << opt.input << " and " << a << "\n"
                << usage_line;
      code = 2;
      return std::nullopt;
    } else {
      opt.input = std::string(a);
      have_input = true;
    }
  }
  if (!have_input && opt.tenant.empty()) {
    std::cerr << "wkproxy: tokens import needs a FILE (or - for stdin), or --tenant ID to read "
                 "the tenant from the CloudFront API\n"
              << usage_line;
    code = 2;
    return std::nullopt;
  }
  if (opt.write && opt.tokens_dir) {
    std::cerr << "wkproxy: --write and --tokens-dir exclude each other\n" << usage_line;
    code = 2;
    return std::nullopt;
  }
  if (!opt.prefix.starts_with("/") || !opt.prefix.ends_with("/")) {
    std::cerr << R"(wkproxy: --prefix must start and end with "/", got ")" << opt.prefix << "\"\n"
              << usage_line;
    code = 2;
    return std::nullopt;
  }
  return opt;
}

// The whole of a file or of stdin ("-"); the reason on failure.
std::variant<std::string, std::string> read_input(const std::string& path) {
  constexpr std::size_t max_bytes = std::size_t{16} * 1024 * 1024;  // far more than any real answer
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      return std::variant<std::string, std::string>(std::in_place_index<1>, "is a directory");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return std::variant<std::string, std::string>(
          std::in_place_index<1>, std::string("cannot read: ") + std::strerror(errno));
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) {
      return std::variant<std::string, std::string>(std::in_place_index<1>, "read error");
    }
  }
  if (text.size() > max_bytes) {
    return std::variant<std::string, std::string>(std::in_place_index<1>,
                                                  "larger than 16 MiB: not certificate details");
  }
  return std::variant<std::string, std::string>(std::in_place_index<0>, std::move(text));
}

// Replaces `target` with `text` atomically: a temporary file in the same directory, the old
// file's mode (and owner, when allowed), fsync, rename. Symbolic links are followed, so the
// link stays and its target is replaced. The reason on failure (the old file is untouched).
std::optional<std::string> write_atomically(const std::string& path, std::string_view text) {
  std::error_code ec;
  const fs::path target = fs::canonical(path, ec);
  if (ec) {
    return "cannot resolve the path: " + ec.message();
  }
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0) {
    return std::string("cannot stat: ") + std::strerror(errno);
  }
  std::string temp =
      (target.parent_path() / ("." + target.filename().string() + ".wkproxy-XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    return "cannot create a temporary file next to it: " + std::string(std::strerror(errno));
  }
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return what + ": " + std::strerror(err);
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("cannot write " + temp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchown(fd, st.st_uid, st.st_gid) != 0) {
    // Best effort: only root may give a file away; the mode below is what matters.
  }
  if (::fchmod(fd, st.st_mode & 07777) != 0) {
    return fail("cannot set the mode of " + temp);
  }
  if (::fsync(fd) != 0) {
    return fail("cannot sync " + temp);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return "cannot write " + temp + ": " + std::strerror(err);
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return "cannot replace the file: " + std::string(std::strerror(err));
  }
  return std::nullopt;
}

// True when `text` (the updated `path`) loads as a config; else prints why, as the loader found
// it, and that nothing was written ("... `change` it would not be a valid config").
bool loads_as_config(const std::string& path, const std::string& text,
                     const config::env_lookup& env, std::string_view change) {
  const config::load_result loaded = config::load_string(text, path, env);
  if (loaded.errors.empty()) {
    return true;
  }
  std::cerr << "wkproxy: " << path << ": not written: " << change
            << " it would not be a valid config (lines below are those of the updated text):\n";
  for (const config::error& e : loaded.errors) {
    std::cerr << e.to_string() << "\n";
  }
  return false;
}

// The file of `tenant` in a tokens_dir: its id with every character outside [A-Za-z0-9._-]
// (an ARN's ':' and '/') made '_', and no leading '.', + ".yaml".
std::string tenant_file_name(std::string_view tenant) {
  std::string name;
  for (char c : tenant) {
    name += core::is_alpha(c) || core::is_digit(c) || c == '.' || c == '_' || c == '-' ? c : '_';
  }
  if (name.starts_with('.')) {
    name[0] = '_';
  }
  return name + ".yaml";
}

// --tokens-dir: the tenant's whole file, {tenant, domains, tokens}, written atomically after the
// config's own loader accepted it. Another tenant's file under the same name is not replaced.
int write_tenant_file(const options& opt, const certificate_details& details) {
  if (details.tenant.empty()) {
    std::cerr << "wkproxy: --tokens-dir needs --tenant (the details have no CertificateArn)\n";
    return 1;
  }
  const fs::path dir(*opt.tokens_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::cerr << "wkproxy: " << dir.string() << ": not a directory\n";
    return 1;
  }
  const std::string path = (dir / tenant_file_name(details.tenant)).string();
  std::string text = "# tenant " + details.tenant + ": " +
                     render_tokens_yaml(details).substr(std::string_view("# ").size());
  text.insert(text.find('\n') + 1, "tenant: " + config::yaml_quoted(details.tenant) + "\n");
  const config::env_lookup env = config::process_env();
  const config::load_result loaded = config::load_tenant_string(text, path, opt.prefix, env);
  if (!loaded.errors.empty()) {
    std::cerr << "wkproxy: " << path << ": not written: it would not load:\n";
    for (const config::error& e : loaded.errors) {
      std::cerr << e.to_string() << "\n";
    }
    return 1;
  }
  const bool exists = fs::exists(path, ec);
  std::string old_text;
  if (exists) {
    auto read = read_input(path);
    if (const auto* reason = std::get_if<1>(&read)) {
      std::cerr << "wkproxy: " << path << ": " << *reason << "\n";
      return 1;
    }
    old_text = std::get<0>(std::move(read));
    const auto before = config::load_tenant_string(old_text, path, opt.prefix, env);
    if (before.cfg && !before.cfg->tokens.empty() &&
        before.cfg->tokens.front().tenant != details.tenant) {
      std::cerr << "wkproxy: " << path << ": not written: it holds tenant "
                << before.cfg->tokens.front().tenant << ", not " << details.tenant << "\n";
      return 1;
    }
    if (old_text == text) {
      std::cout << path << ": already up to date (" << count_of(details.tokens.size(), "token")
                << ")\n";
      return 0;
    }
  } else {
    // write_atomically replaces an existing file, keeping its mode: start one (mode 0644).
    std::ofstream create(path, std::ios::binary);
    if (!create) {
      std::cerr << "wkproxy: " << path << ": cannot create: " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  if (auto problem = write_atomically(path, text)) {
    std::cerr << "wkproxy: " << path << ": not written: " << *problem << "\n";
    if (!exists) {
      fs::remove(path, ec);
    }
    return 1;
  }
  std::cout << "wrote " << count_of(details.tokens.size(), "token") << " of tenant "
            << details.tenant << " to " << path << " (reload wkproxy to serve them)\n";
  return 0;
}

int write_config(const options& opt, const certificate_details& details) {
  const std::string& path = *opt.write;
  auto read = read_input(path);
  if (const auto* reason = std::get_if<1>(&read)) {
    std::cerr << "wkproxy: " << path << ": " << *reason << "\n";
    return 1;
  }
  const std::string& old_text = std::get<0>(read);
  const config::env_lookup env = config::process_env();
  const config_rewrite rewrite = rewrite_config(old_text, details.tokens, env, details.tenant);
  if (!rewrite.error.empty()) {
    std::cerr << "wkproxy: " << path << ": not written: " << rewrite.error << "\n";
    return 1;
  }
  for (const std::string& w : rewrite.warnings) {
    std::cerr << "warning: " << path << ": " << w << "\n";
  }
  if (!loads_as_config(path, rewrite.text, env, "with the imported tokens")) {
    return 1;
  }
  if (rewrite.text == old_text) {
    std::cout << path << ": already up to date (" << count_of(details.tokens.size(), "token")
              << ")\n";
    return 0;
  }
  if (auto problem = write_atomically(path, rewrite.text)) {
    std::cerr << "wkproxy: " << path << ": not written: " << *problem << "\n";
    return 1;
  }
  std::cout << "wrote " << count_of(details.tokens.size(), "token");
  if (!details.tenant.empty()) {
    std::cout << " of tenant " << details.tenant;
  }
  std::cout << " to " << path << " (";
  if (!rewrite.replaced) {
    std::cout << "added a tokens block";
  } else {
    std::cout << "replaced " << count_of(rewrite.removed_tokens, "earlier token") << ", kept "
              << count_of(rewrite.kept_tokens, "token") << " of other tenants";
  }
  std::cout << ")";
  if (!rewrite.added_domains.empty()) {
    std::cout << "; added domains: " << boost::algorithm::join(rewrite.added_domains, ", ");
  }
  std::cout << "\n";
  return 0;
}

}  // namespace

std::string render_tokens_yaml(const certificate_details& details) {
  std::string out = "# from get-managed-certificate-details: status " +
                    (details.status.empty() ? std::string("unknown") : details.status) + ", " +
                    count_of(details.tokens.size(), "token") + "\n";
  out += "domains: [" + boost::algorithm::join(token_domains(details.tokens), ", ") + "]\n";
  out += config::tokens_block(details.tokens, "\n");
  return out;
}

config_rewrite rewrite_config(std::string_view config_text,
                              const std::vector<imported_token>& tokens,
                              const config::env_lookup& env, std::string_view tenant) {
  // The allow-list as written, with ${VAR} substituted: which token domains it lacks.
  std::vector<std::string> patterns;
  const auto list = config::domain_list_items(config_text);
  if (const auto* items = std::get_if<std::vector<std::string>>(&list)) {
    for (const std::string& item : *items) {
      auto value = config::substitute_env(item, env);
      patterns.push_back(core::to_lower(
          std::holds_alternative<std::string>(value) ? std::get<std::string>(value) : item));
    }
  }
  const routing::host_allow_list allowed(patterns);
  std::vector<std::string> missing;
  for (const std::string& domain : token_domains(tokens)) {
    if (!allowed.allows(domain)) {
      missing.push_back(domain);
    }
  }
  return config::rewrite_tokens(config_text, tokens, missing, tenant);
}

int run_tokens_import(int argc, char** argv) {
  int code = 0;
  const auto opt = parse_args(argc, argv, code);
  if (!opt) {
    return code;
  }
  std::string name;
  std::string text;
  if (opt->input.empty()) {
    // No file: the CloudFront API, with the environment's credentials, as the proxy polls it.
    name = "GetManagedCertificateDetails " + opt->tenant;
    const auto got = aws::fetch_certificate_details(config::process_env(), opt->tenant,
                                                    std::chrono::seconds(20));
    if (!got.ok) {
      std::cerr << "wkproxy: " << got.text << "\n";
      return 1;
    }
    std::cerr << "read tenant " << opt->tenant
              << " from the CloudFront API (credentials: " << got.source << ")\n";
    text = got.text;
  } else {
    name = opt->input == "-" ? "<stdin>" : opt->input;
    auto read = read_input(opt->input);
    if (const auto* reason = std::get_if<1>(&read)) {
      std::cerr << "wkproxy: " << name << ": " << *reason << "\n";
      return 1;
    }
    text = std::get<0>(std::move(read));
  }
  certificate_details details = parse_certificate_details(text, opt->prefix);
  assign_tenant(details, opt->tenant);
  if (details.tenant.empty() && details.errors.empty()) {
    details.warnings.emplace_back(
        "no CertificateArn and no --tenant: the tokens carry no tenant, and --write replaces "
        "only earlier tokens on the same domains");
  }
  for (const std::string& w : details.warnings) {
    std::cerr << "warning: " << name << ": " << w << "\n";
  }
  if (!details.errors.empty()) {
    for (const std::string& e : details.errors) {
      std::cerr << "wkproxy: " << name << ": " << e << "\n";
    }
    return 1;
  }
  if (opt->write) {
    return write_config(*opt, details);
  }
  if (opt->tokens_dir) {
    return write_tenant_file(*opt, details);
  }
  std::cout << render_tokens_yaml(details);
  return 0;
}

int run_tokens_remove(int argc, char** argv) {
  constexpr std::string_view remove_usage = wk::cli::help_tokens_remove;
  const std::string_view line = remove_usage.substr(0, remove_usage.find('\n') + 1);
  std::string tenant;
  std::string path;
  std::string dir;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << remove_usage;
      return 0;
    }
    std::string* out = a == "--tenant" || a.starts_with("--tenant=")           ? &tenant
                       : a == "--write" || a.starts_with("--write=")           ? &path
                       : a == "--tokens-dir" || a.starts_with("--tokens-dir=") ? &dir
                                                                               : nullptr;
    if (out == nullptr) {
      std::cerr << "wkproxy: unexpected argument " << a << "\n" << line;
      return 2;
    }
    if (const auto eq = a.find('='); eq != std::string_view::npos) {
      *out = std::string(a.substr(eq + 1));
    } else if (i + 1 < argc) {
      *out = argv[++i];
    } else {
      std::cerr << "wkproxy: " << a << " needs a value\n" << line;
      return 2;
    }
  }
  if (!valid_tenant(tenant) || (path.empty() == dir.empty()) || path == "-") {
    std::cerr << "wkproxy: tokens remove needs --tenant ID and one of --write CONFIG or "
                 "--tokens-dir DIR\n"
              << line;
    return 2;
  }
  if (!dir.empty()) {
    const std::string file = (fs::path(dir) / tenant_file_name(tenant)).string();
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      std::cerr << "warning: " << file << ": no file of tenant " << tenant << "; nothing changed\n";
      return 0;
    }
    if (!fs::remove(file, ec) || ec) {
      std::cerr << "wkproxy: " << file << ": cannot remove: " << ec.message() << "\n";
      return 1;
    }
    std::cout << "removed " << file << " (tenant " << tenant
              << "); reload wkproxy to stop serving its tokens\n";
    return 0;
  }
  auto read = read_input(path);
  if (const auto* reason = std::get_if<1>(&read)) {
    std::cerr << "wkproxy: " << path << ": " << *reason << "\n";
    return 1;
  }
  const std::string& old_text = std::get<0>(read);
  const config_rewrite rewrite = config::rewrite_tokens(old_text, {}, {}, tenant);
  if (!rewrite.error.empty()) {
    std::cerr << "wkproxy: " << path << ": not written: " << rewrite.error << "\n";
    return 1;
  }
  if (rewrite.removed_tokens == 0) {
    std::cerr << "warning: " << path << ": no tokens of tenant " << tenant;
    if (!rewrite.kept_tenants.empty()) {
      std::cerr << " (tenants there: " << boost::algorithm::join(rewrite.kept_tenants, ", ") << ")";
    }
    std::cerr << "; nothing changed\n";
    return 0;
  }
  const config::env_lookup env = config::process_env();
  if (!loads_as_config(path, rewrite.text, env, "without those tokens")) {
    return 1;
  }
  if (auto problem = write_atomically(path, rewrite.text)) {
    std::cerr << "wkproxy: " << path << ": not written: " << *problem << "\n";
    return 1;
  }
  std::cout << "removed " << count_of(rewrite.removed_tokens, "token") << " of tenant " << tenant
            << " from " << path << "; kept " << count_of(rewrite.kept_tokens, "token")
            << " of other tenants\n";
  // The domains stay allow-listed: say so, since in forward mode an allow-listed domain without
  // tokens still sends any safe file name under the prefix to CloudFront.
  std::cout << "still in the allow-list (remove by hand when the tenant is gone): "
            << boost::algorithm::join(rewrite.removed_domains, ", ") << "\n";
  return 0;
}

}  // namespace wk::cli