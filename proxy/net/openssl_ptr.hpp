#pragma once
// OpenSSL objects owned by std::unique_ptr with their own free functions: the server side of
// TLS (certificates, keys, OCSP) and the demo's throwaway CA use the same ones.

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace wk::net {

struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct general_names_free {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};
struct ocsp_response_free {
  void operator()(OCSP_RESPONSE* r) const { OCSP_RESPONSE_free(r); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using general_names_ptr = std::unique_ptr<GENERAL_NAMES, general_names_free>;
using ocsp_response_ptr = std::unique_ptr<OCSP_RESPONSE, ocsp_response_free>;

}  // namespace wk::net
