#include "digest.hpp"

#include <stdexcept>

#include <openssl/evp.h>

namespace mbdtest {

std::string sha256_hex(const std::string& data)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int length = 0;
	if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), NULL) != 1) {
		throw std::runtime_error("EVP_Digest failed");
	}
	static const char hex[] = "0123456789abcdef";
	std::string result;
	for (unsigned int i = 0; i < length; ++i) {
		result += hex[digest[i] >> 4];
		result += hex[digest[i] & 0x0f];
	}
	return result;
}

}
